//! Checkpoints: a save/load round trip restores every parameter and buffer bit for bit, and a
//! checkpoint that does not fit the model is a named error.

use convnet::Tensor;
use convnet::checkpoint::{Checkpoint, CheckpointError};
use convnet::init::{Init, init_weights};
use convnet::layers::{BatchNorm2d, Conv2d, Ctx, Layer, LayerExt, Linear, Sequential};
use convnet::models;
use convnet::rng::Rng;

fn small_net() -> Sequential {
    let mut net = Sequential::new()
        .with_named("conv", Conv2d::builder(1, 2, [3, 3]).build().unwrap())
        .with_named("bn", BatchNorm2d::new(2).unwrap());
    let init = Init::XavierUniform { gain: 1.0 };
    init_weights(&mut net, init, &mut Rng::new(1));
    net
}

#[test]
fn round_trip_restores_every_tensor() {
    let spec = models::find("lenet5").unwrap();
    let model = spec.build_initialized(3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    let mut ckpt = Checkpoint::from_model(&model);
    ckpt.metadata.insert("model".into(), "lenet5".into());
    ckpt.save(&path).unwrap();

    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded, ckpt);
    let mut fresh = spec.build_initialized(4).unwrap();
    assert_ne!(
        fresh.named_params()[0].1.value,
        model.named_params()[0].1.value
    );
    loaded.apply_to(&mut fresh).unwrap();
    for ((n1, p1), (n2, p2)) in fresh.named_params().iter().zip(model.named_params()) {
        assert_eq!((n1, &p1.value), (&n2, &p2.value));
    }
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"features.0.weight".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"classifier.2.bias".to_string()),
        "{names:?}"
    );
}

#[test]
fn batch_norm_buffers_are_saved() {
    let mut net = small_net();
    let x = Tensor::new([2, 1, 4, 4], (0..32).map(|i| i as f32).collect()).unwrap();
    net.forward(x, &mut Ctx::train(Rng::new(0))).unwrap();
    let ckpt = Checkpoint::from_model(&net);
    let mean = &ckpt.tensors["bn.running_mean"];
    assert!(mean.data.iter().any(|&v| v != 0.0), "running mean moved");
    assert_eq!(ckpt.tensors["bn.num_batches_tracked"].data, vec![1.0]);
}

#[test]
fn mismatches_are_named_errors() {
    let mut net = small_net();
    let good = Checkpoint::from_model(&net);

    let mut missing = good.clone();
    missing.tensors.remove("conv.bias");
    assert!(matches!(
        missing.apply_to(&mut net),
        Err(CheckpointError::MissingTensor { name }) if name == "conv.bias"
    ));

    let mut extra = good.clone();
    extra.insert("head.weight".into(), vec![1], vec![0.0]);
    assert!(matches!(
        extra.apply_to(&mut net),
        Err(CheckpointError::UnexpectedTensor { name }) if name == "head.weight"
    ));

    let mut other = Sequential::new().with_named("conv", Linear::new(9, 2, true).unwrap());
    assert!(matches!(
        good.apply_to(&mut other),
        Err(CheckpointError::ShapeMismatch { .. }) | Err(CheckpointError::UnexpectedTensor { .. })
    ));

    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        Checkpoint::load(&tmp.path().join("none.safetensors")),
        Err(CheckpointError::Missing { .. })
    ));
    let truncated = tmp.path().join("t.safetensors");
    good.save(&truncated).unwrap();
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(
        Checkpoint::load(&truncated),
        Err(CheckpointError::Format { .. })
    ));
    let missing_dir = tmp.path().join("no/such/dir/x.safetensors");
    assert!(matches!(
        good.save(&missing_dir),
        Err(CheckpointError::Io { .. })
    ));
}
