//! PyTorch weights load through convnet's checkpoint reader and give PyTorch's outputs.
//!
//! The weights (hundreds of MB) are not committed; `scripts/export_torchvision.py` makes
//! them reproducibly from torchvision's seeded random initialization:
//!
//! ```text
//! /usr/bin/python3 scripts/export_torchvision.py weights target/torchvision
//! cargo test --release --test torchvision_weights -- --ignored --nocapture
//! ```
//!
//! `CONVNET_TORCHVISION_DIR` overrides the directory and `CONVNET_TORCHVISION_MODELS` (a
//! comma-separated list, e.g. `resnet18,googlenet`) the models checked; every model checked
//! must have been exported. The committed names-and-shapes check is in `tests/model_zoo.rs`.

use std::path::PathBuf;

use convnet::Tensor;
use convnet::checkpoint::Checkpoint;
use convnet::layers::{Ctx, Layer};
use convnet::models;

/// Largest allowed `|convnet - PyTorch|` of an output logit.
const TOLERANCE: f32 = 1e-4;

const MODELS: &str = "alexnet,vgg11,vgg16,googlenet,resnet18,resnet34,resnet50,densenet121";

fn tensor(ckpt: &Checkpoint, name: &str) -> Tensor {
    let t = ckpt
        .tensors
        .get(name)
        .unwrap_or_else(|| panic!("no tensor `{name}`"));
    let mut shape = [1usize; 4];
    shape[..t.shape.len()].copy_from_slice(&t.shape);
    Tensor::new(shape, t.data.clone()).unwrap()
}

#[test]
#[ignore = "needs weights exported by scripts/export_torchvision.py (see the file header)"]
fn torchvision_weights_give_pytorch_outputs() {
    let dir = std::env::var_os("CONVNET_TORCHVISION_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/torchvision"));
    let list = std::env::var("CONVNET_TORCHVISION_MODELS").unwrap_or_else(|_| MODELS.into());
    for name in list.split(',') {
        let weights = dir.join(format!("{name}.safetensors"));
        let io = dir.join(format!("{name}.io.safetensors"));
        assert!(
            weights.is_file() && io.is_file(),
            "{} lacks {name}'s export: run /usr/bin/python3 scripts/export_torchvision.py weights {}",
            dir.display(),
            dir.display()
        );
        let spec = models::find(name).unwrap();
        let mut model = (spec.build)().unwrap();
        Checkpoint::load(&weights)
            .unwrap()
            .apply_to(&mut model)
            .unwrap();
        let io = Checkpoint::load(&io).unwrap();
        let (x, want) = (tensor(&io, "input"), tensor(&io, "output"));
        let got = model.forward(x, &mut Ctx::eval()).unwrap();
        assert_eq!(got.shape(), [1, spec.classes, 1, 1], "{name}");
        let diff = got
            .data()
            .iter()
            .zip(want.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = want.data().iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        println!("{name:<12} max |convnet - pytorch| = {diff:.3e}  (max |output| {scale:.3e})");
        assert!(diff <= TOLERANCE, "{name}: max difference {diff}");
    }
}
