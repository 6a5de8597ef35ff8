//! Precomputed embeddings (`--embeds`) and the decode's tiling under a small budget, without a GPU:
//! every malformed file is an error naming the file and tensor, a good one plans like encoded
//! prompts, and a budget too small for the untiled VAE decode gets exact tiles instead of an error.

mod pipeline_common;

use std::path::{Path, PathBuf};

use pipeline_common::{load, request};
use wanrt::models::pipeline::{Embeddings, PipelineOptions, Stage};
use wanrt::runtime::weights::{write_safetensors, StorageDType};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-embeds-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, tensors: &[(&str, &[usize])]) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_vec(), (0..s.iter().product::<usize>()).flat_map(|i| ((i % 13) as f32 * 0.01).to_le_bytes()).collect()))
        .collect();
    let refs: Vec<(&str, StorageDType, &[usize], &[u8])> = data.iter().map(|(n, s, b)| (n.as_str(), StorageDType::F32, s.as_slice(), b.as_slice())).collect();
    write_safetensors(path, &refs, &[]).unwrap();
}

#[test]
fn malformed_embeddings_are_refused_by_name() {
    let p = load("t2v", PipelineOptions::default());
    let dim = p.transformer_config().text_dim;
    let d = dir();
    let err = |path: &Path, image: Option<usize>| Embeddings::open(path, dim, image).unwrap_err().to_string();

    assert!(err(&d.join("missing.safetensors"), None).contains("does not exist"));
    let f = d.join("no_prompt.safetensors");
    write(&f, &[("negative_prompt_embeds", &[1, 4, dim])]);
    assert!(err(&f, None).contains("no prompt_embeds"), "{}", err(&f, None));
    let f = d.join("wide.safetensors");
    write(&f, &[("prompt_embeds", &[1, 4, dim + 1])]);
    let e = err(&f, None);
    assert!(e.contains("prompt_embeds") && e.contains("text_dim") && e.contains("wide.safetensors"), "{e}");
    let f = d.join("long.safetensors");
    write(&f, &[("prompt_embeds", &[1, 513, dim])]);
    assert!(err(&f, None).contains("512"), "{}", err(&f, None));
    let f = d.join("image_for_t2v.safetensors");
    write(&f, &[("prompt_embeds", &[1, 4, dim]), ("image_embeds", &[1, 257, 16])]);
    assert!(err(&f, None).contains("text-to-video"), "{}", err(&f, None));
    let f = d.join("image_shape.safetensors");
    write(&f, &[("prompt_embeds", &[1, 4, dim]), ("image_embeds", &[257, 16])]);
    assert!(err(&f, Some(16)).contains("image_embeds"), "{}", err(&f, Some(16)));

    // A trimmed prompt (diffusers' encode_prompt output) is padded with zero rows to 512.
    let f = d.join("good.safetensors");
    write(&f, &[("prompt_embeds", &[1, 7, dim])]);
    let e = Embeddings::open(&f, dim, None).unwrap();
    assert_eq!(e.prompt.len(), 512 * dim);
    assert!(e.prompt[7 * dim..].iter().all(|&v| v == 0.0) && e.prompt[..7 * dim].iter().any(|&v| v != 0.0));
    assert!(e.negative.is_none());

    // Without negative_prompt_embeds, guidance > 1 is refused at planning; guidance 1 plans without UMT5.
    let mut req = request(&p, "t2v");
    assert!(req.guidance > 1.0);
    let plan_err = p.plan(&req, 2 << 30, Some(&e)).unwrap_err().to_string();
    assert!(plan_err.contains("negative_prompt_embeds") && plan_err.contains("good.safetensors"), "{plan_err}");
    req.guidance = 1.0;
    let plans = p.plan(&req, 2 << 30, Some(&e)).unwrap();
    assert!(plans.text.is_none());
    assert_eq!(plans.summary(Stage::EncodeText), Some("precomputed embeddings"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_small_budget_tiles_the_decode_instead_of_failing() {
    let p = load("t2v", PipelineOptions::default());
    let mut req = request(&p, "t2v");
    // The fixture's own 32x48 decode is smaller than UMT5's activations; at 480x832 the tiny VAE's
    // activations are the largest of any stage.
    (req.height, req.width) = (480, 832);
    let roomy = p.plan(&req, 2 << 30, None).unwrap();
    assert!(roomy.decode_tiles.is_untiled(), "2 GiB decodes the fixture whole");
    // Lower the budget until the decode no longer fits whole: the plan then tiles it (or, lower
    // still, fails with an error naming what is missing).
    let mut budget = 2u64 << 30;
    let mut tiled = None;
    while budget > 1 << 20 {
        budget = budget * 15 / 16;
        match p.plan(&req, budget, None) {
            Ok(plans) if !plans.decode_tiles.is_untiled() => {
                tiled = Some((budget, plans));
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("at {budget} bytes the plan failed before the decode was tiled: {e}"),
        }
    }
    let (budget, plans) = tiled.expect("no budget tiled the decode");
    assert!(plans.decode_bytes <= budget, "tiled decode {} over the budget {budget}", plans.decode_bytes);
    let text = plans.summary(Stage::Decode).unwrap();
    eprintln!("at {budget} bytes: {text}");
    assert!(text.contains("tiles") && text.contains("bit-identical"), "{text}");
}
