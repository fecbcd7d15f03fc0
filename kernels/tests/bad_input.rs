//! Every invalid geometry or buffer gets its named error; nothing panics.

use convnet_kernels::testing::{self, DataKind};
use convnet_kernels::{Algorithm, Conv2d, ConvError, ConvParams, Padding, Pass, WinogradTile};
use proptest::prelude::*;

fn p(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize) -> ConvParams {
    ConvParams::new(n, c_in, h, w, c_out, [k, k])
}

#[test]
fn invalid_geometries_are_named() {
    let big = usize::MAX / 2;
    type Case = (&'static str, ConvParams, fn(&ConvError) -> bool);
    let cases: Vec<Case> = vec![
        ("zero channels", p(1, 0, 5, 5, 4, 3), |e| {
            matches!(e, ConvError::ZeroSize { what: "c_in" })
        }),
        ("zero c_out", p(1, 3, 5, 5, 0, 3), |e| {
            matches!(e, ConvError::ZeroSize { what: "c_out" })
        }),
        ("zero height", p(1, 3, 0, 5, 4, 3), |e| {
            matches!(e, ConvError::ZeroSize { what: "h" })
        }),
        ("zero kernel", p(1, 3, 5, 5, 4, 0), |e| {
            matches!(e, ConvError::ZeroSize { what: "kh" })
        }),
        (
            "zero stride",
            ConvParams {
                stride: [0, 1],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::ZeroSize { what: "stride" }),
        ),
        (
            "zero dilation",
            ConvParams {
                dilation: [1, 0],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::ZeroSize { what: "dilation" }),
        ),
        (
            "zero groups",
            ConvParams {
                groups: 0,
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::ZeroSize { what: "groups" }),
        ),
        (
            "c_in not divisible",
            ConvParams {
                groups: 2,
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::GroupsMismatch { groups: 2, .. }),
        ),
        (
            "c_out not divisible",
            ConvParams {
                groups: 2,
                ..p(1, 4, 5, 5, 3, 3)
            },
            |e| matches!(e, ConvError::GroupsMismatch { .. }),
        ),
        ("kernel larger than input", p(1, 3, 4, 4, 4, 5), |e| {
            matches!(
                e,
                ConvError::KernelTooLarge {
                    axis: "height",
                    extent: 5,
                    padded: 4
                }
            )
        }),
        (
            "dilated kernel larger than padded input",
            ConvParams {
                dilation: [1, 3],
                padding: [0, 0, 1, 1],
                ..p(1, 3, 9, 4, 4, 3)
            },
            |e| {
                matches!(
                    e,
                    ConvError::KernelTooLarge {
                        axis: "width",
                        extent: 7,
                        padded: 6
                    }
                )
            },
        ),
        (
            "output_padding >= max(stride, dilation)",
            ConvParams {
                transposed: true,
                stride: [2, 2],
                output_padding: [2, 0],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| {
                matches!(
                    e,
                    ConvError::OutputPaddingTooLarge {
                        axis: "height",
                        output_padding: 2,
                        limit: 2
                    }
                )
            },
        ),
        (
            "output_padding in normal mode",
            ConvParams {
                output_padding: [0, 1],
                stride: [2, 2],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::OutputPaddingWithoutTransposed),
        ),
        (
            "transposed output cropped away",
            ConvParams {
                transposed: true,
                padding: [2, 2, 0, 0],
                ..p(1, 3, 1, 5, 4, 3)
            },
            |e| matches!(e, ConvError::EmptyOutput { axis: "height" }),
        ),
        ("input size overflows", p(big, big, 5, 5, 4, 3), |e| {
            matches!(e, ConvError::Overflow { .. })
        }),
        (
            "padded size overflows",
            ConvParams {
                padding: [usize::MAX, 1, 0, 0],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::Overflow { .. }),
        ),
        (
            "dilated extent overflows",
            ConvParams {
                dilation: [usize::MAX, 1],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::Overflow { .. }),
        ),
        (
            "transposed size overflows",
            ConvParams {
                transposed: true,
                stride: [usize::MAX, 1],
                ..p(1, 3, 5, 5, 4, 3)
            },
            |e| matches!(e, ConvError::Overflow { .. }),
        ),
        (
            "FLOP count overflows",
            p(1 << 20, 1 << 14, 1 << 8, 1 << 8, 1 << 14, 1),
            |e| matches!(e, ConvError::Overflow { .. }),
        ),
        (
            "weight overflows",
            ConvParams {
                ..p(1, 1 << 31, 1, 1, 1 << 31, 1)
            },
            |e| matches!(e, ConvError::Overflow { .. }),
        ),
    ];
    for (name, params, ok) in cases {
        match Conv2d::new(params) {
            Ok(_) => panic!("{name}: accepted {params:?}"),
            Err(e) => {
                assert!(ok(&e), "{name}: wrong error {e:?}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn same_padding_is_normal_mode_only() {
    let err = Conv2d::builder(1, 2, 5, 5, 2, [3, 3])
        .padding(Padding::Same)
        .transposed([0, 0])
        .build();
    assert!(
        matches!(
            err,
            Err(ConvError::Unsupported {
                kernel: "Padding::Same",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn batch_zero_is_legal_and_empty() {
    let conv = Conv2d::builder(0, 3, 5, 5, 4, [3, 3]).build().unwrap();
    assert_eq!(conv.output_len(), 0);
    conv.forward(
        Algorithm::Auto,
        &[],
        &vec![0.0; conv.weight_len()],
        None,
        &mut [],
    )
    .unwrap();
}

#[test]
fn wrong_buffer_lengths_are_named() {
    let conv = Conv2d::builder(2, 4, 6, 6, 8, [3, 3])
        .padding(Padding::Same)
        .build()
        .unwrap();
    let (x, w, b, y) = (
        vec![0.0; conv.input_len()],
        vec![0.0; conv.weight_len()],
        vec![0.0; conv.bias_len()],
        vec![0.0; conv.output_len()],
    );
    let short = |v: &Vec<f32>| v[..v.len() - 1].to_vec();
    let named = |r: Result<(), ConvError>, want: &str| match r {
        Err(ConvError::BufferLength {
            buffer,
            expected,
            got,
        }) => {
            assert_eq!(buffer, want);
            assert_eq!(expected, got + 1);
        }
        other => panic!("{want}: {other:?}"),
    };
    let a = Algorithm::Auto;
    named(
        conv.forward(a, &short(&x), &w, Some(&b), &mut y.clone()),
        "x",
    );
    named(
        conv.forward(a, &x, &short(&w), Some(&b), &mut y.clone()),
        "weight",
    );
    named(
        conv.forward(a, &x, &w, Some(&short(&b)), &mut y.clone()),
        "bias",
    );
    named(conv.forward(a, &x, &w, Some(&b), &mut short(&y)), "y");
    named(
        conv.backward_data(a, &short(&y), &w, &mut x.clone()),
        "grad_y",
    );
    named(conv.backward_data(a, &y, &w, &mut short(&x)), "grad_x");
    named(
        conv.backward_weight(a, &x, &y, &mut short(&w), None),
        "grad_weight",
    );
    named(
        conv.backward_weight(a, &x, &y, &mut w.clone(), Some(&mut short(&b))),
        "grad_bias",
    );
}

#[test]
fn unsupported_algorithms_are_named_not_substituted() {
    // No Winograd kernel takes a 5x5 stride-2 conv: an error, never a silent fallback.
    let conv = Conv2d::builder(1, 3, 9, 9, 4, [5, 5])
        .stride([2, 2])
        .build()
        .unwrap();
    for tile in [WinogradTile::F2, WinogradTile::F4, WinogradTile::F6] {
        let err = conv
            .kernel(Algorithm::Winograd(tile), Pass::Forward)
            .map(|k| k.name());
        assert!(matches!(err, Err(ConvError::Unsupported { .. })), "{err:?}");
    }
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..=6,
        Just(usize::MAX),
        Just(usize::MAX / 2),
        Just(1 << 32),
        any::<usize>()
    ]
}

proptest! {
    /// Arbitrary, mostly invalid geometries and buffer lengths: `Ok` or a named `Err`.
    #[test]
    fn arbitrary_requests_never_panic(
        dims in proptest::collection::vec(size(), 16),
        transposed in any::<bool>(),
        lens in proptest::collection::vec(0usize..64, 4),
    ) {
        let params = ConvParams {
            n: dims[0], c_in: dims[1], h: dims[2], w: dims[3], c_out: dims[4], kh: dims[5], kw: dims[6],
            stride: [dims[7], dims[8]], padding: [dims[9], dims[10], dims[11], dims[12]],
            dilation: [dims[13], dims[14]], groups: dims[15], transposed, output_padding: [dims[13] % 3, dims[14] % 3],
        };
        let _ = params.id();
        let _ = params.receptive_field();
        let _ = params.output_shape();
        if let Ok(conv) = Conv2d::new(params) {
            prop_assert!(conv.flops() > 0 || conv.output_len() == 0);
            // Random lengths: only exactly right ones may reach a kernel.
            let x = vec![0.0; lens[0]];
            let w = vec![0.0; lens[1]];
            let mut y = vec![0.0; lens[2]];
            let ok_lens = lens[0] == conv.input_len() && lens[1] == conv.weight_len() && lens[2] == conv.output_len();
            let r = conv.forward(Algorithm::Auto, &x, &w, None, &mut y);
            prop_assert_eq!(r.is_ok(), ok_lens);
        }
    }
}

#[test]
fn generated_problems_are_valid_and_bounded() {
    for p in testing::sample_problems(300, 9, DataKind::Real) {
        assert!(p.conv.geom().macs() <= testing::MAC_BUDGET);
    }
}
