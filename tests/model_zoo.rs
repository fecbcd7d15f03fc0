//! The model zoo: the full-size models have torchvision's parameter counts, names and
//! shapes; every model runs a training step; summaries add up and their receptive fields
//! agree with the published ones.
//!
//! `cargo test --release --test model_zoo -- --ignored` also runs one forward + backward +
//! SGD step of every full-size model on a 224x224 batch of 2 (a few seconds each).

use convnet::layers::{Ctx, Layer, LayerExt};
use convnet::loss::softmax_cross_entropy;
use convnet::models::{self, MODELS, ModelSpec};
use convnet::optim::Sgd;
use convnet::rng::Rng;
use convnet::summary::summarize;
use convnet::{Error, Tensor};

/// torchvision's parameter counts (`sum(p.numel() for p in model.parameters())`).
const TORCHVISION_PARAMS: [(&str, usize); 8] = [
    ("alexnet", 61_100_840),
    ("vgg11", 132_863_336),
    ("vgg16", 138_357_544),
    ("googlenet", 6_624_904),
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("densenet121", 7_978_856),
];

/// The small variants and their parameter counts (so a change to one is deliberate).
const SMALL_PARAMS: [(&str, usize); 6] = [
    ("alexnet_small", 809_098),
    ("vgg_small", 482_218),
    ("inception_small", 270_458),
    ("resnet20", 272_186),
    ("resnet56", 855_482),
    ("densenet_bc", 175_690),
];

#[test]
fn full_size_parameter_counts_equal_torchvision() {
    for (name, want) in TORCHVISION_PARAMS {
        let spec = models::find(name).unwrap();
        assert_eq!(spec.input, [3, 224, 224], "{name}");
        assert_eq!(spec.classes, 1000, "{name}");
        let model = (spec.build)().unwrap();
        assert_eq!(model.param_count(), want, "{name}");
    }
}

#[test]
fn small_variant_parameter_counts() {
    for (name, want) in SMALL_PARAMS {
        let spec = models::find(name).unwrap();
        assert_eq!((spec.input, spec.classes), ([1, 32, 32], 10), "{name}");
        assert_eq!(spec.defaults.data, Some("fashion-mnist"), "{name}");
        assert_eq!((spec.build)().unwrap().param_count(), want, "{name}");
    }
}

/// Every model is listed once, and the lists above cover the zoo.
#[test]
fn zoo_lists_every_model_once() {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "{names:?}");
    for (name, _) in TORCHVISION_PARAMS.iter().chain(&SMALL_PARAMS) {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert_eq!(
        names.len(),
        TORCHVISION_PARAMS.len() + SMALL_PARAMS.len() + 1
    );
}

/// Names and shapes of every tensor (parameters and buffers), in order, against torchvision's
/// `state_dict` as `scripts/export_torchvision.py names` wrote it.
#[test]
fn full_size_state_dicts_equal_torchvision() {
    let text = include_str!("data/torchvision_state_dicts.jsonl");
    let mut seen = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["model"].as_str().unwrap();
        let want: Vec<(String, Vec<usize>)> = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let shape = t[1].as_array().unwrap();
                let shape = shape.iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (t[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        let model = (models::find(name).unwrap().build)().unwrap();
        let got: Vec<(String, Vec<usize>)> = model
            .named_params()
            .into_iter()
            .map(|(n, p)| (n, p.shape.clone()))
            .collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{name}: tensor {i}");
        }
        assert_eq!(got.len(), want.len(), "{name}: tensor count");
        assert_eq!(model.param_count() as u64, v["params"].as_u64().unwrap());
        seen += 1;
    }
    assert_eq!(seen, TORCHVISION_PARAMS.len());
}

/// The summary's totals are the model's, its last row gives the logits, and the receptive
/// fields agree with the published values (Araujo, Norris, Sim 2019, "Computing receptive
/// fields of convolutional neural networks": AlexNet's pool5 195, VGG-16's pool5 212).
#[test]
fn summaries_add_up_and_receptive_fields_are_published_ones() {
    for spec in MODELS {
        let model = (spec.build)().unwrap();
        let [c, h, w] = spec.input;
        let s = summarize(&model, [1, c, h, w]).unwrap();
        assert_eq!(s.total_params, model.param_count(), "{}", spec.name);
        assert_eq!(
            s.rows.last().unwrap().output,
            [1, spec.classes, 1, 1],
            "{}",
            spec.name
        );
        assert!(s.total_flops > 0);
    }
    let rf = |model: &str, layer: &str| {
        let spec = models::find(model).unwrap();
        let [c, h, w] = spec.input;
        let s = summarize(&(spec.build)().unwrap(), [1, c, h, w]).unwrap();
        let row = s.rows.iter().find(|r| r.name == layer).unwrap();
        (row.receptive[0], row.jump[0])
    };
    assert_eq!(rf("alexnet", "features.12"), (195.0, 32.0));
    assert_eq!(rf("vgg16", "features.30"), (212.0, 32.0));
    // ResNet-50 (torchvision's v1.5: stride in the 3x3) before global pooling.
    assert_eq!(rf("resnet50", "layer4.2"), (427.0, 32.0));
    // Parallel branches take the largest field: inception3a's 3x3 branches see 43 pixels.
    assert_eq!(rf("googlenet", "inception3a"), (43.0, 8.0));
    // Convolution FLOPs: 2 * c_out * oh * ow * c_in * kh * kw.
    let spec = models::find("resnet18").unwrap();
    let s = summarize(&(spec.build)().unwrap(), [1, 3, 224, 224]).unwrap();
    assert_eq!(s.rows[0].name, "conv1");
    assert_eq!(s.rows[0].flops, 2 * 64 * 112 * 112 * 3 * 7 * 7);
}

/// Every convolution row carries the kernel geometry `convnet bench` times, and it is the
/// layer's: same FLOPs, same output shape; no other row has one.
#[test]
fn convolution_rows_carry_their_kernel_geometry() {
    for spec in MODELS {
        let [c, h, w] = spec.input;
        let s = summarize(&(spec.build)().unwrap(), [2, c, h, w]).unwrap();
        let mut convs = 0;
        for r in &s.rows {
            let is_conv = r.kind == "Conv2d" || r.kind == "ConvTranspose2d";
            assert_eq!(
                r.conv.is_some(),
                is_conv,
                "{}: {} ({})",
                spec.name,
                r.name,
                r.kind
            );
            if let Some(p) = r.conv {
                convs += 1;
                let k = convnet::kernels::Conv2d::new(p).unwrap();
                assert_eq!(k.flops(), r.flops, "{}: {}", spec.name, r.name);
                assert_eq!(k.output_shape(), r.output, "{}: {}", spec.name, r.name);
                assert_eq!(p.n, 2);
            }
        }
        assert!(convs > 0, "{} has no convolution", spec.name);
    }
}

/// Forward, loss, backward and one SGD step on `batch` random images: the loss is finite
/// and every trained parameter got a finite gradient. Returns the loss.
fn train_step(spec: &ModelSpec, batch: usize) -> Result<f64, Error> {
    let mut model = spec.build_initialized(1)?;
    let [c, h, w] = spec.input;
    let mut rng = Rng::new(2);
    let len = batch * c * h * w;
    let x = Tensor::new(
        [batch, c, h, w],
        (0..len).map(|_| rng.normal() as f32).collect(),
    )?;
    let labels: Vec<usize> = (0..batch).map(|i| (7 * i + 3) % spec.classes).collect();
    let logits = model.forward(x, &mut Ctx::train(Rng::new(3)))?;
    assert_eq!(logits.shape(), [batch, spec.classes, 1, 1], "{}", spec.name);
    let out = softmax_cross_entropy(&logits, &labels)?;
    model.backward_params(out.grad)?;
    for (name, p) in model.named_params() {
        if p.is_trainable() {
            assert!(
                p.grad.iter().all(|g| g.is_finite()),
                "{}: {name} has a non-finite gradient",
                spec.name
            );
        }
    }
    let before = model.named_params()[0].1.value.clone();
    Sgd::new(spec.defaults.sgd)?.step(&mut model, spec.defaults.lr as f32)?;
    assert_ne!(model.named_params()[0].1.value, before, "{}", spec.name);
    assert!(out.loss.is_finite(), "{}: loss {}", spec.name, out.loss);
    Ok(out.loss)
}

#[test]
fn every_small_model_takes_a_training_step() {
    for spec in MODELS.iter().filter(|m| m.input == [1, 32, 32]) {
        train_step(spec, 4).unwrap();
    }
}

/// One forward + backward + SGD step of every full-size model on a 224x224 batch of 2.
#[test]
#[ignore = "full-size models: about two minutes in release mode, mostly initialization"]
fn every_full_size_model_takes_a_training_step() {
    for (name, _) in TORCHVISION_PARAMS {
        let spec = models::find(name).unwrap();
        let loss = train_step(spec, 2).unwrap();
        println!("{name:<12} batch 2 at 224x224: loss {loss:.3}");
    }
}
