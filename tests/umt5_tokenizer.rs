//! The UMT5 tokenizer and prompt cleaning (`models/umt5/tokenizer.rs`) against transformers and Python.
//!
//! - `tests/fixtures/umt5/tokenizer_cases.json` (`tools/fixtures/gen_umt5_tokens.py`): prompts through
//!   diffusers' `prompt_clean` (no ftfy) and transformers 5.17's `AutoTokenizer` on the fixture's tiny
//!   Unigram tokenizer at max_length 512: cleaned text, ids and masks must be identical; plus
//!   `[input, html.unescape(input)]` pairs over Python's whole HTML5 entity table and numeric rules.
//! - `tests/fixtures/umt5/prompts.json` and `inputs.safetensors` (`gen_umt5.py`): the pipeline's own
//!   `_get_t5_prompt_embeds` at max_sequence_length 64.
//! - Error cases: missing or malformed tokenizer.json, a non-Unigram model, a vocabulary larger than the
//!   embedding, invalid UTF-8, a max_length with no room for the prompt.
//!
//! CPU only.

mod common;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wanrt::models::umt5::tokenizer::{html_unescape, prompt_clean, prompt_from_bytes, Encoded, UmtTokenizer};
use wanrt::runtime::weights::SafeTensorsFile;

fn tokenizer() -> UmtTokenizer {
    let path = common::fixture("umt5/tokenizer/tokenizer.json");
    UmtTokenizer::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct Cases {
    max_length: usize,
    pad_id: u32,
    eos_id: u32,
    vocab_size: usize,
    cases: Vec<Case>,
    unescape: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    cleaned: String,
    seq_len: usize,
    ids: Vec<i64>,
}

fn cases() -> Cases {
    let path = common::fixture("umt5/tokenizer_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A short printable form of a prompt for failure messages.
fn show(s: &str) -> String {
    let head: String = s.chars().take(60).collect();
    format!("{head:?}{}", if s.chars().count() > 60 { "…" } else { "" })
}

#[test]
fn prompt_clean_matches_diffusers() {
    let c = cases();
    assert!(c.cases.len() >= 30, "only {} cases", c.cases.len());
    for case in &c.cases {
        assert_eq!(prompt_clean(&case.prompt), case.cleaned, "prompt {}", show(&case.prompt));
    }
}

#[test]
fn html_unescape_matches_python() {
    let c = cases();
    assert!(c.unescape.len() > 100, "only {} unescape pairs", c.unescape.len());
    let bad: Vec<String> = c
        .unescape
        .iter()
        .filter(|(input, want)| html_unescape(input) != *want)
        .map(|(input, want)| format!("{}: got {:?}, Python {:?}", show(input), show(&html_unescape(input)), show(want)))
        .collect();
    assert!(bad.is_empty(), "{} of {} differ:\n{}", bad.len(), c.unescape.len(), bad.join("\n"));
}

#[test]
fn ids_and_masks_match_transformers_at_512() {
    let c = cases();
    let tok = tokenizer();
    assert_eq!((tok.pad_id(), tok.eos_id(), tok.vocab_size()), (c.pad_id, c.eos_id, c.vocab_size));
    assert_eq!(c.max_length, wanrt::models::umt5::tokenizer::MAX_SEQUENCE_LENGTH);
    assert!(c.cases.iter().any(|k| k.seq_len == c.max_length), "no case reaches the truncation limit");

    let raw: Vec<&str> = c.cases.iter().map(|k| k.prompt.as_str()).collect();
    let got = tok.encode_prompts(&raw, c.max_length).expect("encode");
    let cleaned: Vec<&str> = c.cases.iter().map(|k| k.cleaned.as_str()).collect();
    assert_eq!(tok.encode_batch(&cleaned, c.max_length).expect("encode cleaned"), got);
    assert_eq!((got.ids.len(), got.mask.len(), got.seq_lens.len()), (raw.len(), raw.len(), raw.len()));

    for (i, case) in c.cases.iter().enumerate() {
        let n = case.seq_len;
        let mut ids = case.ids.clone();
        ids.resize(c.max_length, i64::from(c.pad_id));
        let mask: Vec<i64> = (0..c.max_length).map(|j| i64::from(j < n)).collect();
        let what = format!("case {i} {}", show(&case.prompt));
        assert_eq!(got.seq_lens[i], n, "{what}: seq_len");
        assert_eq!(got.ids[i], ids, "{what}: ids");
        assert_eq!(got.mask[i], mask, "{what}: mask");
        assert_eq!(got.ids[i][n - 1], i64::from(c.eos_id), "{what}: </s> last");
    }
}

/// The pipeline's own run at max_sequence_length 64 (gen_umt5.py): tokens and the ids it fed the encoder.
#[test]
fn matches_the_pipeline_fixture_at_64() {
    #[derive(Deserialize)]
    struct Prompts {
        prompts: Vec<String>,
        cleaned: Vec<String>,
        tokens: Vec<Vec<String>>,
        max_sequence_length: usize,
    }
    let path = common::fixture("umt5/prompts.json");
    let p: Prompts = serde_json::from_str(&std::fs::read_to_string(&path).expect("prompts.json")).expect("parse");
    let tok = tokenizer();
    let raw: Vec<&str> = p.prompts.iter().map(String::as_str).collect();
    let got = tok.encode_prompts(&raw, p.max_sequence_length).expect("encode");
    for (i, prompt) in raw.iter().enumerate() {
        assert_eq!(prompt_clean(prompt), p.cleaned[i], "prompt {i}");
        let toks: Vec<String> =
            got.ids[i][..got.seq_lens[i]].iter().map(|&t| tok.id_to_token(t as u32).expect("token")).collect();
        assert_eq!(toks, p.tokens[i], "prompt {i}");
    }

    let file = SafeTensorsFile::open(common::fixture("umt5/inputs.safetensors")).expect("inputs.safetensors");
    let read = |name: &str| -> Vec<i64> {
        let b = file.bytes(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    };
    let l = p.max_sequence_length;
    let (ids, mask, lens) = (read("input_ids"), read("attention_mask"), read("seq_lens"));
    for i in 0..raw.len() {
        assert_eq!(got.ids[i], ids[i * l..(i + 1) * l], "input_ids row {i}");
        assert_eq!(got.mask[i], mask[i * l..(i + 1) * l], "attention_mask row {i}");
        assert_eq!(got.seq_lens[i] as i64, lens[i], "seq_lens {i}");
    }
}

#[test]
fn truncation_keeps_eos_last() {
    let tok = tokenizer();
    let long = "a golden dragon flies slowly over a quiet mountain village at night";
    for max_length in [1, 2, 8] {
        let Encoded { ids, mask, seq_lens } = tok.encode_batch(&[long, ""], max_length).expect("encode");
        assert_eq!(seq_lens[0], max_length, "max_length {max_length}");
        assert_eq!(ids[0].len(), max_length);
        assert_eq!(ids[0][max_length - 1], i64::from(tok.eos_id()));
        assert!(mask[0].iter().all(|&m| m == 1));
        assert_eq!(ids[1][0], i64::from(tok.eos_id()), "the empty prompt is </s> alone");
        assert_eq!(seq_lens[1], 1);
    }
    let err = tok.encode_batch(&["a"], 0).expect_err("max_length 0").to_string();
    assert!(err.contains("max_length 0"), "{err}");
    assert_eq!(tok.encode_batch(&[], 512).expect("empty batch"), Encoded { ids: vec![], mask: vec![], seq_lens: vec![] });
}

#[test]
fn from_folder_takes_the_root_or_the_tokenizer_folder() {
    let root = common::fixture("umt5");
    let a = UmtTokenizer::from_folder(&root).expect("model root");
    let b = UmtTokenizer::from_folder(root.join("tokenizer")).expect("tokenizer folder");
    assert_eq!(a.path(), b.path());
    assert_eq!(a.vocab_size(), b.vocab_size());

    let missing = common::fixture("umt5/text_encoder");
    let err = UmtTokenizer::from_folder(&missing).expect_err("no tokenizer here").to_string();
    assert!(err.contains("tokenizer/tokenizer.json") && err.contains(&missing.display().to_string()), "{err}");
}

/// A scratch folder for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanrt-umt5-tokenizer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = scratch("errors");

    let missing = dir.join("nothing").join("tokenizer.json");
    let err = UmtTokenizer::from_file(&missing).expect_err("missing").to_string();
    assert!(err.contains(&missing.display().to_string()) && err.contains("not found"), "{err}");

    let path = write(&dir, "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<pad>\", 0.0]");
    let err = UmtTokenizer::from_file(&path).expect_err("truncated JSON").to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("malformed tokenizer JSON") && err.contains("line 1"), "{err}");

    let path = write(&dir, "[1, 2]");
    let err = UmtTokenizer::from_file(&path).expect_err("not an object").to_string();
    assert!(err.contains("not a JSON object"), "{err}");

    let fixture = std::fs::read_to_string(common::fixture("umt5/tokenizer/tokenizer.json")).expect("fixture");
    let mut doc: serde_json::Value = serde_json::from_str(&fixture).expect("fixture JSON");
    doc["model"] = serde_json::json!({"type": "BPE", "vocab": {}, "merges": []});
    let path = write(&dir, &doc.to_string());
    let err = UmtTokenizer::from_file(&path).expect_err("BPE").to_string();
    assert!(err.contains("Unigram") && err.contains("BPE"), "{err}");

    // A vocabulary entry of the wrong shape: the deserializer's message, with the path.
    let mut doc: serde_json::Value = serde_json::from_str(&fixture).expect("fixture JSON");
    doc["model"]["vocab"][5] = serde_json::json!("not a pair");
    let path = write(&dir, &doc.to_string());
    let err = UmtTokenizer::from_file(&path).expect_err("bad vocab").to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("malformed tokenizer JSON"), "{err}");

    // No </s>: nothing to end a prompt with.
    let mut doc: serde_json::Value = serde_json::from_str(&fixture).expect("fixture JSON");
    doc["model"]["vocab"][1][0] = serde_json::json!("<eos>");
    doc["added_tokens"] = serde_json::json!([]);
    let path = write(&dir, &doc.to_string());
    let err = UmtTokenizer::from_file(&path).expect_err("no </s>").to_string();
    assert!(err.contains("</s>"), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_vocab_against_the_embedding_rows() {
    let tok = tokenizer();
    let v = tok.vocab_size();
    tok.check_vocab(v).expect("equal");
    tok.check_vocab(256_384).expect("a larger (padded) embedding, as umt5-xxl's");
    let err = tok.check_vocab(v - 1).expect_err("too small").to_string();
    assert!(err.contains(&format!("{} rows", v - 1)) && err.contains(&format!("vocabulary size {v}")), "{err}");
}

#[test]
fn prompt_from_bytes_requires_utf8() {
    assert_eq!(prompt_from_bytes("café ☕".as_bytes()).expect("utf-8"), "café ☕");
    let err = prompt_from_bytes(b"caf\xe9 au lait").expect_err("latin-1").to_string();
    assert!(err.contains("not valid UTF-8") && err.contains("offset 3") && err.contains("0xe9"), "{err}");
    let err = prompt_from_bytes(b"ok \xe2\x98").expect_err("truncated").to_string();
    assert!(err.contains("offset 3"), "{err}");
}
