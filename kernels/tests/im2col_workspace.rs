//! The im2col scratch bound: per task at most `max(COL_BUDGET, rows * MIN_TILE)` floats with
//! `rows = (c_in/g)*kh*kw`, independent of the image size (checked on 224x224 and 448x448).

use convnet_kernels::im2col::{COL_BUDGET, MIN_TILE, scratch_floats};
use convnet_kernels::parallel::scratch_high_water;
use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, ConvParams, Pass};

#[test]
fn scratch_is_bounded_whatever_the_image_size() {
    for (c, k) in [(64, 3), (3, 7), (256, 3)] {
        let at = |hw| {
            let p = ConvParams {
                padding: [k / 2; 4],
                ..ConvParams::new(1, c, hw, hw, 8, [k, k])
            };
            scratch_floats(&p.validate().unwrap())
        };
        let rows = c * k * k;
        let bound = COL_BUDGET.max(rows * MIN_TILE);
        assert!(at(224) <= bound, "{c}x{k}x{k}: {} > {bound}", at(224));
        assert_eq!(at(224), at(448), "the scratch must not grow with the image");
        assert!(
            at(224) * 4 < 224 * 224 * rows,
            "far below a full column matrix"
        );
    }

    // Measured: run all three passes on a 224x224 layer and read the largest scratch asked.
    let conv = Conv2d::builder(1, 64, 224, 224, 16, [3, 3])
        .padding(convnet_kernels::Padding::Same)
        .build()
        .unwrap();
    let x = fill(1, conv.input_len(), DataKind::Real);
    let w = fill(2, conv.weight_len(), DataKind::Real);
    let mut y = vec![0.0; conv.output_len()];
    let mut dx = vec![0.0; conv.input_len()];
    let mut dw = vec![0.0; conv.weight_len()];
    for pass in Pass::ALL {
        let kernel = conv.kernel(Algorithm::Im2col, pass).unwrap();
        match pass {
            Pass::Forward => conv.forward_with(kernel, &x, &w, None, &mut y).unwrap(),
            Pass::BackwardData => conv.backward_data_with(kernel, &y, &w, &mut dx).unwrap(),
            Pass::BackwardWeight => conv
                .backward_weight_with(kernel, &x, &y, &mut dw, None)
                .unwrap(),
        }
    }
    let used = scratch_high_water();
    let bound = scratch_floats(conv.geom());
    assert!(
        used > 0 && used <= bound,
        "used {used} floats, bound {bound}"
    );
}
