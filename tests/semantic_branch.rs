//! The semantic branch (docs/method.md section 2) against a plain re-computation of what
//! it adds to the latent, warm starts, its cached features, and models that lack parts.

mod common;

use candle_core::{DType, Device, Tensor};
use spae::model::config::BranchMode;
use spae::model::{SpaeConfig, SpaeModel, CONFIG_FILE, WEIGHTS_FILE};

fn set(model: &SpaeModel, name: &str, seed: u64, scale: f32) {
    let data = model.varmap().data().lock().unwrap();
    let var = &data[name];
    let values = common::random_values(var.elem_count(), seed, scale);
    var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu).unwrap()).unwrap();
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn pixels() -> Tensor {
    let image = spae::image_io::load_prepared(&common::sample("red-apple.png"), 64).unwrap();
    spae::image_io::to_tensor(std::slice::from_ref(&image)).unwrap()
}

/// The default config with its branch added to the latent.
fn adding_config() -> SpaeConfig {
    let mut config = SpaeConfig::default();
    config.semantic_branch.as_mut().unwrap().mode = BranchMode::Add;
    config
}

#[test]
fn branch_adds_the_projected_mean_feature_of_each_cell() {
    let model = SpaeModel::from_seed(adding_config(), common::codebook(), 0).unwrap();
    set(&model, "branch.project_out.weight", 1, 0.05);
    set(&model, "branch.layer_offsets", 2, 0.1);
    // The same CNN without a branch, by warm start from the branch model's weights.
    let dir = common::fresh_dir("branch-reference");
    model.save(&dir).unwrap();
    let plain = SpaeConfig { semantic_branch: None, ..SpaeConfig::default() };
    let cnn = SpaeModel::from_seed(plain, common::codebook(), 7).unwrap();
    assert!(cnn.warm_start_from(&dir.join(WEIGHTS_FILE)).unwrap().is_empty(), "every CNN tensor is shared");

    let pixels = pixels();
    let added: Vec<f32> =
        values(&(model.encode_latent(&pixels).unwrap().z - cnn.encode_latent(&pixels).unwrap().z).unwrap());
    let grid = model.branch().unwrap().teacher_grid(&pixels, model.shape()).unwrap();
    assert_eq!(grid.dims(), &[1, 1280, 4, 4]);
    let grid = values(&grid);

    let data = model.varmap().data().lock().unwrap();
    let w_in = values(data["branch.project_in.weight"].as_tensor());
    let b_in = values(data["branch.project_in.bias"].as_tensor());
    let w_out = values(data["branch.project_out.weight"].as_tensor());
    let b_out = values(data["branch.project_out.bias"].as_tensor());
    let offsets = values(data["branch.layer_offsets"].as_tensor());
    let (features, hidden, dim, g) = (1280, 512, 576, 16);
    // What layer `layer`'s cell holding latent position (y, x) adds, channel by channel.
    let cell_term = |layer: usize, y: usize, x: usize| -> Vec<f64> {
        let s = 1 << (layer - 1);
        let (row, col) = (y * s / g, x * s / g);
        let per = 4 / s;
        let f: Vec<f64> = (0..features)
            .map(|c| {
                let mut sum = 0.0;
                for gy in row * per..(row + 1) * per {
                    for gx in col * per..(col + 1) * per {
                        sum += grid[c * 16 + gy * 4 + gx] as f64;
                    }
                }
                sum / (per * per) as f64
            })
            .collect();
        let h: Vec<f64> = (0..hidden)
            .map(|j| {
                let a = b_in[j] as f64 + (0..features).map(|c| w_in[j * features + c] as f64 * f[c]).sum::<f64>();
                a / (1.0 + (-a).exp())
            })
            .collect();
        (0..dim)
            .map(|d| {
                b_out[d] as f64
                    + offsets[(layer - 1) * dim + d] as f64
                    + (0..hidden).map(|j| w_out[d * hidden + j] as f64 * h[j]).sum::<f64>()
            })
            .collect()
    };
    for (y, x) in [(0, 0), (5, 11), (15, 2), (9, 9)] {
        let expected: Vec<f64> = {
            let terms: Vec<Vec<f64>> = (1..=3).map(|l| cell_term(l, y, x)).collect();
            (0..dim).map(|d| terms.iter().map(|t| t[d]).sum()).collect()
        };
        for d in [0, 17, 300, 575] {
            let got = added[d * g * g + y * g + x] as f64;
            assert!(
                (got - expected[d]).abs() < 1e-3 * expected[d].abs().max(1.0),
                "({y},{x}) ch {d}: {got} vs {}",
                expected[d]
            );
        }
    }
}

#[test]
fn a_new_branch_adds_nothing_and_warm_starts_keep_the_cnn() {
    let dir = common::fresh_dir("branch-warm");
    let plain = SpaeConfig { semantic_branch: None, ..SpaeConfig::default() };
    let cnn = SpaeModel::from_seed(plain, common::codebook(), 3).unwrap();
    cnn.save(&dir).unwrap();
    let model = SpaeModel::from_seed(adding_config(), common::codebook(), 0).unwrap();
    let fresh = model.warm_start_from(&dir.join(WEIGHTS_FILE)).unwrap();
    assert_eq!(
        fresh,
        [
            "branch.layer_offsets",
            "branch.project_in.bias",
            "branch.project_in.weight",
            "branch.project_out.bias",
            "branch.project_out.weight"
        ]
    );
    let pixels = pixels();
    let difference = (model.encode_latent(&pixels).unwrap().z - cnn.encode_latent(&pixels).unwrap().z).unwrap();
    let largest = difference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(largest, 0.0, "a branch initialised at zero leaves the CNN's latent as it was");
}

/// In `name` mode the branch's cell projections are the upper layers' targets: z is the
/// CNN's alone, and the upper words do not change with the CNN's weights.
#[test]
fn a_naming_branch_gives_the_upper_targets_and_leaves_z_to_the_cnn() {
    let named_config = |seed| {
        let mut config = SpaeConfig::default();
        config.semantic_branch.as_mut().unwrap().mode = BranchMode::Name;
        let model = SpaeModel::from_seed(config, common::codebook(), seed).unwrap();
        set(&model, "branch.project_out.weight", 1, 0.05);
        set(&model, "branch.layer_offsets", 2, 0.1);
        model
    };
    let (model, other_cnn) = (named_config(0), named_config(9));
    {
        // The same branch in both (projector and offsets); the CNNs stay different.
        let (from, to) = (model.varmap().data().lock().unwrap(), other_cnn.varmap().data().lock().unwrap());
        for (name, var) in from.iter().filter(|(name, _)| name.starts_with("branch.")) {
            to[name].set(var.as_tensor()).unwrap();
        }
    }
    let adding = SpaeModel::from_seed(adding_config(), common::codebook(), 5).unwrap();
    let dir = common::fresh_dir("branch-name");
    model.save(&dir).unwrap();
    assert!(adding.warm_start_from(&dir.join(WEIGHTS_FILE)).unwrap().is_empty());

    let pixels = pixels();
    let latent = model.encode_latent(&pixels).unwrap();
    let added = adding.encode_latent(&pixels).unwrap();
    assert!(added.named.is_empty(), "in add mode nothing is named");
    let grid = model.branch().unwrap().teacher_grid(&pixels, model.shape()).unwrap();
    let projections = model.branch().unwrap().cell_projections(&grid, model.shape()).unwrap();
    assert_eq!(latent.named.len(), 3);
    for (named, projection) in latent.named.iter().zip(&projections) {
        assert_eq!(values(named), values(projection));
    }
    // z without the branch: the add-mode model's latent less what its branch adds.
    let branch_part = adding.branch().unwrap().forward(&grid, adding.shape()).unwrap();
    let cnn_z = (&added.z - branch_part).unwrap();
    let worst = (&latent.z - cnn_z).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(worst < 1e-5, "z is the CNN's alone (differs by {worst})");

    // Another CNN (seed 9) with the same branch weights names the same upper words.
    let (_, first) = model.quantize(&pixels).unwrap();
    let (_, second) = other_cnn.quantize(&pixels).unwrap();
    for layer in 1..=3 {
        assert_eq!(first.pyramids[0].layer(layer), second.pyramids[0].layer(layer), "layer {layer}");
    }
    assert_ne!(first.pyramids[0].layer(6), second.pyramids[0].layer(6), "the CNN still decides the lower layers");
}

#[test]
fn a_model_whose_config_names_a_branch_needs_its_weights() {
    let dir = common::fresh_dir("branch-missing");
    let plain = SpaeConfig { semantic_branch: None, ..SpaeConfig::default() };
    SpaeModel::from_seed(plain, common::codebook(), 0).unwrap().save(&dir).unwrap();
    std::fs::write(dir.join(CONFIG_FILE), serde_json::to_string(&SpaeConfig::default()).unwrap()).unwrap();
    let before = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains(&dir.join(WEIGHTS_FILE).display().to_string()), "{message}");
    assert!(message.contains("missing tensor branch.project_in.weight [512, 1280, 1, 1]"), "{message}");
    assert_eq!(std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(), before, "nothing is written");

    let mut config = serde_json::to_value(SpaeConfig::default()).unwrap();
    config["semantic_branch"]["teacher_input"] = 96.into();
    std::fs::write(dir.join(CONFIG_FILE), config.to_string()).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("semantic_branch.teacher_input 96 gives a 3 x 3 feature map"), "{message}");
    config["semantic_branch"]["layers"] = 7.into();
    std::fs::write(dir.join(CONFIG_FILE), config.to_string()).unwrap();
    let message = format!("{:#}", SpaeModel::load(&dir, common::codebook()).err().unwrap());
    assert!(message.contains("semantic_branch.layers must be 1..=6"), "{message}");
}

#[test]
fn cached_feature_batches_mirror_with_their_images() {
    let features = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 4.0, &Device::Cpu).unwrap().reshape((2, 3, 4, 4)).unwrap();
    let batch = spae::data::feature_cache::batch(&features, &[1, 0], &[true, false]).unwrap();
    assert_eq!(batch.dims(), &[2, 3, 4, 4]);
    let got: Vec<Vec<Vec<Vec<f32>>>> = (0..2).map(|b| batch.get(b).unwrap().to_vec3().unwrap()).collect();
    let original: Vec<Vec<Vec<f32>>> = features.get(1).unwrap().to_vec3().unwrap();
    for c in 0..3 {
        for y in 0..4 {
            let mut row = original[c][y].clone();
            row.reverse();
            assert_eq!(got[0][c][y], row);
        }
    }
    assert_eq!(got[1], features.get(0).unwrap().to_vec3::<f32>().unwrap());
    assert_eq!(batch.dtype(), DType::F32);
}
