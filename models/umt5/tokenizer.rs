//! The UMT5 tokenizer and the prompt cleaning Wan's pipelines apply before it.
//!
//! Reference: diffusers `src/diffusers/pipelines/wan/pipeline_wan.py` (`prompt_clean`,
//! `WanPipeline._get_t5_prompt_embeds`) and transformers `src/transformers/models/t5/tokenization_t5.py`
//! (`T5Tokenizer`, what `AutoTokenizer` gives for Wan's `tokenizer/` folder) with
//! `src/transformers/tokenization_utils_tokenizers.py` (how it reads `tokenizer.json`).
//!
//! The pipeline does, per prompt:
//!
//! ```text
//! prompt_clean(p) = whitespace_clean(basic_clean(p))
//!   basic_clean:      ftfy.fix_text (only if ftfy is installed), html.unescape twice, strip()
//!   whitespace_clean: re.sub(r"\s+", " "), strip()
//! tokenizer(cleaned, padding="max_length", max_length=512, truncation=True,
//!           add_special_tokens=True, return_attention_mask=True)
//! seq_lens = mask.gt(0).sum(1)
//! ```
//!
//! [`prompt_clean`] reproduces that without ftfy (see its documentation for exactly what that leaves
//! out); [`UmtTokenizer::encode_batch`] reproduces the tokenizer call.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokenizers::{Tokenizer, TruncationDirection};
use wanrt_runtime::{Error, Result};

/// The special tokens of T5's tokenizer (transformers' `T5Tokenizer` defaults, which umt5 keeps).
pub const PAD_TOKEN: &str = "<pad>";
pub const EOS_TOKEN: &str = "</s>";

/// The `max_sequence_length` Wan's pipelines pass (the UMT5 context is 512 tokens).
pub const MAX_SEQUENCE_LENGTH: usize = 512;

/// One batch of prompts, tokenized as the pipeline's tokenizer call returns it: every row has exactly
/// `max_length` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `input_ids`: the prompt's tokens, `</s>` after them, then `pad_id` up to `max_length`.
    pub ids: Vec<Vec<i64>>,
    /// `attention_mask`: 1 for every token up to and including `</s>`, 0 for padding. A `<pad>` typed in
    /// the prompt is a real token (mask 1), so count the mask, not the pad ids.
    pub mask: Vec<Vec<i64>>,
    /// Ones in each mask row (`</s>` included): the pipeline's `seq_lens`, the rows of the encoder's output
    /// it keeps before zero-padding.
    pub seq_lens: Vec<usize>,
}

/// The UMT5 tokenizer as transformers loads it from a Diffusers `tokenizer/tokenizer.json`.
///
/// transformers' `T5Tokenizer` does not use the file's pipeline as stored: it takes the Unigram vocabulary
/// and rebuilds the rest (`tokenization_t5.py`, `T5Tokenizer.__init__`; the file is read in
/// `TokenizersBackend.convert_to_native_format`). So does this type, to give the same ids:
/// - model: `Unigram(vocab, unk_id=2, byte_fallback=False)`, the vocabulary (pieces and scores) from the file;
/// - normalizer: the file's `Precompiled` SentencePiece charsmap (top level or inside a `Sequence`) alone, or
///   none; any other normalizer in the file (e.g. `Strip`, `Replace(" {2,}")`) is dropped, as transformers does;
/// - pre-tokenizer: `WhitespaceSplit` then `Metaspace("▁", prepend_scheme="always", split=True)`;
/// - post-processor: `$A </s>` (the `</s>` id looked up in the vocabulary);
/// - added tokens: those the file lists (`<pad>`, `</s>`, `<unk>`, any others), matched in the text before the
///   model as transformers matches them. `tokenizer_config.json` is not read: a special token declared only
///   there is not matched here.
///
/// This is transformers 5.17 (the version the fixtures pin). transformers 4 used tokenizer.json's pipeline as
/// stored; the two differ only where the file's dropped normalizers or pre-tokenizer would act on a cleaned
/// prompt (which has no leading, trailing or repeated spaces).
pub struct UmtTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    eos_id: u32,
    /// One more than the largest id the tokenizer can produce (vocabulary and added tokens).
    vocab_size: usize,
    /// Tokens the post-processor adds (`</s>`): truncation keeps room for them.
    added: usize,
}

impl std::fmt::Debug for UmtTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmtTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size)
            .field("pad_id", &self.pad_id)
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl UmtTokenizer {
    /// Loads `tokenizer.json` from a Diffusers model root (`root/tokenizer/tokenizer.json`) or from the
    /// `tokenizer/` folder itself (`root/tokenizer.json`).
    pub fn from_folder(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let candidates = [root.join("tokenizer").join("tokenizer.json"), root.join("tokenizer.json")];
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => Self::from_file(p),
            None => Err(Error::File {
                path: root.to_path_buf(),
                msg: format!(
                    "no UMT5 tokenizer: neither {} nor {} exists (a Diffusers Wan folder has tokenizer/tokenizer.json)",
                    candidates[0].display(),
                    candidates[1].display()
                ),
            }),
        }
    }

    /// Loads a `tokenizer.json` holding a Unigram model (as umt5-xxl's does) and rebuilds it as transformers'
    /// `T5Tokenizer` does (see the type's documentation).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file_err = |msg: String| Error::File { path: path.to_path_buf(), msg };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(file_err("tokenizer.json not found".into()));
            }
            Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
        };
        let mut doc: Value =
            serde_json::from_str(&text).map_err(|e| file_err(format!("malformed tokenizer JSON: {e}")))?;
        let obj = doc.as_object_mut().ok_or_else(|| file_err("malformed tokenizer JSON: not a JSON object".into()))?;

        let model = obj.get_mut("model").and_then(Value::as_object_mut);
        let model = model.ok_or_else(|| file_err("malformed tokenizer JSON: no \"model\" object".into()))?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("(no type)");
        if kind != "Unigram" {
            return Err(file_err(format!("the UMT5 tokenizer is a Unigram model; this file holds {kind}")));
        }
        model.insert("unk_id".into(), json!(2));
        model.insert("byte_fallback".into(), json!(false));

        let normalizer = precompiled_normalizer(obj.get("normalizer"));
        obj.insert("normalizer".into(), normalizer.unwrap_or(Value::Null));
        obj.insert(
            "pre_tokenizer".into(),
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true}
            ]}),
        );
        // Set below, once the </s> id is known; truncation and padding are per call.
        for key in ["post_processor", "truncation", "padding"] {
            obj.insert(key.into(), Value::Null);
        }

        let mut inner: Tokenizer =
            serde_json::from_value(doc).map_err(|e| file_err(format!("malformed tokenizer JSON: {e}")))?;
        let id = |tok: &str| {
            inner.token_to_id(tok).ok_or_else(|| file_err(format!("the vocabulary has no {tok} token")))
        };
        let (pad_id, eos_id) = (id(PAD_TOKEN)?, id(EOS_TOKEN)?);
        let post = json!({
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": EOS_TOKEN, "type_id": 0}}],
            "special_tokens": {EOS_TOKEN: {"id": EOS_TOKEN, "ids": [eos_id], "tokens": [EOS_TOKEN]}}
        });
        let post: tokenizers::PostProcessorWrapper =
            serde_json::from_value(post).map_err(|e| file_err(format!("building the </s> template: {e}")))?;
        inner.with_post_processor(Some(post));
        let added = inner.get_post_processor().map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
        let vocab_size = inner.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1);
        Ok(UmtTokenizer { inner, path: path.to_path_buf(), pad_id, eos_id, vocab_size, added })
    }

    /// The file this tokenizer was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One more than the largest token id the tokenizer can produce (vocabulary and added tokens):
    /// `len(tokenizer)` in transformers when the ids are contiguous, as umt5's are.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The `<pad>` id (0 in umt5): the padding after `</s>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The `</s>` id (1 in umt5), appended to every prompt.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The piece of a token id (`"▁ca"`, `"</s>"`), for messages and tests.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Checks that every id this tokenizer can produce indexes the text encoder's token embedding
    /// (`shared.weight`, `embedding_rows` rows): `vocab_size() <= embedding_rows`.
    ///
    /// The embedding may be larger (umt5-xxl has 256384 rows, padded past the tokenizer's vocabulary; the
    /// extra rows are never looked up). transformers does not check this up front: an id past the table
    /// fails inside `nn.Embedding` at the first forward; here it is an error at load.
    pub fn check_vocab(&self, embedding_rows: usize) -> Result<()> {
        if self.vocab_size > embedding_rows {
            return Err(Error::File {
                path: self.path.clone(),
                msg: format!(
                    "the tokenizer produces ids up to {} (vocabulary size {}) but the text encoder's token \
                     embedding has {embedding_rows} rows: tokenizer and text encoder do not belong together",
                    self.vocab_size - 1,
                    self.vocab_size
                ),
            });
        }
        Ok(())
    }

    /// Tokenizes already-cleaned prompts as `tokenizer(prompts, padding="max_length", max_length=max_length,
    /// truncation=True, add_special_tokens=True, return_attention_mask=True)`: each prompt's tokens are cut
    /// to `max_length - 1` (from the right), `</s>` is appended, the rest is `<pad>` with mask 0. Apply
    /// [`prompt_clean`] first, as the pipeline does ([`Self::encode_prompts`] does both).
    pub fn encode_batch(&self, prompts: &[&str], max_length: usize) -> Result<Encoded> {
        // transformers takes max_length 0 as "no limit" (it is falsy); a fixed-size batch needs one, so
        // 0 is refused. max_length 1 is `</s>` alone, as transformers gives it.
        if max_length == 0 || max_length < self.added {
            return Err(Error::invalid(format!(
                "UMT5 tokenizer: max_length {max_length} is too small: every prompt ends with {} special \
                 token(s), so it must be at least {}",
                self.added,
                self.added.max(1)
            )));
        }
        let mut out = Encoded { ids: Vec::new(), mask: Vec::new(), seq_lens: Vec::new() };
        for (i, prompt) in prompts.iter().enumerate() {
            let tok_err = |e: tokenizers::Error| {
                Error::invalid(format!("UMT5 tokenizer ({}): prompt {i}: {e}", self.path.display()))
            };
            // What tokenizers' own truncation does inside `post_process` when `add_special_tokens` is set
            // (room left for the post-processor's tokens), done here so one tokenizer serves every
            // max_length without being mutated.
            let mut enc = self.inner.encode_fast(*prompt, false).map_err(tok_err)?;
            enc.truncate(max_length - self.added, 0, TruncationDirection::Right);
            let enc = self.inner.post_process(enc, None, true).map_err(tok_err)?;

            let n = enc.get_ids().len();
            let mut ids: Vec<i64> = enc.get_ids().iter().map(|&t| i64::from(t)).collect();
            let mut mask: Vec<i64> = enc.get_attention_mask().iter().map(|&m| i64::from(m)).collect();
            ids.resize(max_length, i64::from(self.pad_id));
            mask.resize(max_length, 0);
            out.seq_lens.push(mask.iter().filter(|&&m| m > 0).count());
            debug_assert_eq!(out.seq_lens.last(), Some(&n));
            out.ids.push(ids);
            out.mask.push(mask);
        }
        Ok(out)
    }

    /// [`prompt_clean`] each prompt, then [`Self::encode_batch`]: `_get_t5_prompt_embeds`' text side.
    pub fn encode_prompts(&self, prompts: &[&str], max_length: usize) -> Result<Encoded> {
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let refs: Vec<&str> = cleaned.iter().map(String::as_str).collect();
        self.encode_batch(&refs, max_length)
    }
}

/// transformers' pick of the normalizer: the first `Precompiled` with a charsmap, at the top level or in a
/// `Sequence` (`convert_to_native_format`); everything else is dropped.
fn precompiled_normalizer(normalizer: Option<&Value>) -> Option<Value> {
    let n = normalizer?;
    let list: Vec<&Value> = match n.get("type").and_then(Value::as_str) {
        Some("Sequence") => n.get("normalizers").and_then(Value::as_array)?.iter().collect(),
        _ => vec![n],
    };
    list.into_iter()
        .find(|n| n.get("type").and_then(Value::as_str) == Some("Precompiled") && n.get("precompiled_charsmap").is_some())
        .cloned()
}

/// A prompt from raw bytes (a file, an argument): UTF-8 or an error naming the first bad byte and its offset.
pub fn prompt_from_bytes(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        Error::invalid(format!(
            "the prompt is not valid UTF-8: invalid or truncated sequence at byte offset {at} of {} (byte 0x{:02x})",
            bytes.len(),
            bytes[at]
        ))
    })
}

// -- prompt cleaning --------------------------------------------------------------------------------------

/// diffusers' `prompt_clean` (`pipelines/wan/pipeline_wan.py`) without its ftfy step: `html.unescape` twice,
/// then every run of whitespace becomes one space and the ends are stripped (`strip()`,
/// `re.sub(r"\s+", " ")`, `strip()`, which together keep the words between whitespace, joined by one space).
///
/// ftfy is not reproduced: diffusers runs `ftfy.fix_text` first only when the `ftfy` package is installed,
/// and the pinned reference environment (like a plain `pip install diffusers`) does not install it. None of
/// `fix_text`'s default steps is done here: no mojibake repair (UTF-8 decoded as Latin-1/cp1252, e.g.
/// "cafÃ©" stays), no NFC normalization (a decomposed "e\u{301}" stays two code points), no full-width to
/// ASCII (`ＡＢＣ`), no ligature splitting (`ﬁ`), no curly-quote straightening, no removal of control
/// characters or terminal escapes, and no HTML unescaping beyond the two `html.unescape` calls (ftfy's
/// `unescape_html="auto"` unescapes entities itself when the text has no `<`, so more levels of escaping
/// come undone: `&amp;amp;amp;` gives `&` with ftfy, `&amp;` here and in the reference). Prompts free of all
/// of those clean the same either way.
pub fn prompt_clean(text: &str) -> String {
    let text = html_unescape(&html_unescape(text));
    text.split(is_py_whitespace).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Python's `str.isspace()` for one character, which is also what `str.strip()` removes and what `\s`
/// matches in a `str` pattern of `re`: Unicode White_Space plus the separators U+001C..U+001F (which
/// Rust's `char::is_whitespace` leaves out).
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `html.unescape` (`Lib/html/__init__.py`), rule for rule:
/// - it scans for `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`, left to right, without overlap;
/// - a numeric reference: 0 becomes U+FFFD, 13 `\r`, 0x80..0x9F their windows-1252 characters (the five
///   unassigned ones stay C1 controls); surrogates and anything past U+10FFFF (however many digits)
///   become U+FFFD; the other C0/C1 controls except `\t \n \f` (U+0001..8, U+000B, U+000E..1F, U+007F),
///   U+FDD0..FDEF and the U+xFFFE/U+xFFFF noncharacters of every plane are removed; the rest is the
///   code point. The `;` is optional;
/// - a name: looked up in the HTML5 table (with its `;` if present); if absent, the longest prefix of at
///   least two characters that is a table entry (only the legacy entities without `;`, such as `&amp`,
///   `&not`, `&copy`) is replaced and the rest kept (`&notit;` → `¬it;`, `&copy2024` → `©2024`);
///   otherwise the text stays.
///
/// The table is the WHATWG list (`entities.json`, 2231 names, the source of Python's `html.entities.html5`)
/// as the `htmlize` crate ships it. `htmlize`'s own `unescape` follows the HTML parsing spec instead, which
/// differs from Python (it keeps noncharacters and controls, and in attributes refuses `&amp` before
/// alphanumerics), so only its table is used.
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match charref(after, &mut out) {
            Some(used) => rest = &after[used..],
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Matches a character reference at the start of `s` (the text after a `&`). On a match, pushes its
/// replacement and returns the bytes it used; `None` when the pattern does not match here.
fn charref(s: &str, out: &mut String) -> Option<usize> {
    if let Some(num) = s.strip_prefix('#') {
        let (radix, digits_at) = match num.as_bytes().first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let body = &s[digits_at..];
        let len = body.bytes().take_while(|b| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() }).count();
        if len == 0 {
            // `&#x` without hex digits: the decimal branch does not match either ('x' is no digit).
            return None;
        }
        // Saturates: any value past U+10FFFF is replaced the same way, however large.
        let value = body[..len].bytes().fold(0u32, |v, b| {
            v.saturating_mul(radix).saturating_add(char::from(b).to_digit(radix).unwrap_or(0))
        });
        out.push_str(&numeric_replacement(value));
        let semi = usize::from(body[len..].starts_with(';'));
        return Some(digits_at + len + semi);
    }

    let excluded = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';');
    let name_end = s.char_indices().take_while(|&(_, c)| !excluded(c)).take(32).last().map(|(i, c)| i + c.len_utf8())?;
    let end = name_end + usize::from(s[name_end..].starts_with(';'));
    let name = &s[..end];
    if let Some(exp) = entity(name) {
        out.push_str(exp);
        return Some(end);
    }
    // The longest known prefix of at least two characters (Python: `for x in range(len(s)-1, 1, -1)`).
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(exp) = entity(&name[..cut]) {
            out.push_str(exp);
            out.push_str(&name[cut..]);
            return Some(end);
        }
    }
    out.push('&');
    out.push_str(name);
    Some(end)
}

/// The expansion of an entity name as written after `&` (`"amp;"`, `"amp"`), from the WHATWG table.
fn entity(name: &str) -> Option<&'static str> {
    let key = format!("&{name}");
    htmlize::ENTITIES.get(key.as_bytes()).and_then(|v| std::str::from_utf8(v).ok())
}

/// Python's `_replace_charref` for a numeric reference (`html/__init__.py`: `_invalid_charrefs`, then
/// surrogates and out-of-range values, then `_invalid_codepoints`).
fn numeric_replacement(n: u32) -> String {
    // windows-1252 for 0x80..0x9F; the unassigned 0x81, 0x8D, 0x8F, 0x90, 0x9D stay as the C1 control.
    const CP1252: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}',
        '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}',
        '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}',
        '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
    ];
    let c = match n {
        0 => '\u{fffd}',
        0x0d => '\r',
        0x80..=0x9f => CP1252[(n - 0x80) as usize],
        0xd800..=0xdfff | 0x110000.. => '\u{fffd}',
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => return String::new(),
        _ if n & 0xfffe == 0xfffe => return String::new(),
        _ => char::from_u32(n).unwrap_or('\u{fffd}'),
    };
    c.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_rules() {
        let u = html_unescape;
        assert_eq!(u("&#65;&#x41;&#X41;&#65"), "AAAA");
        assert_eq!(u("&#0;&#13;&#x80;&#x81;&#x9f;"), "\u{fffd}\r\u{20ac}\u{81}\u{178}");
        assert_eq!(u("&#xd800;&#1114112;&#99999999999999999999999;"), "\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(u("a&#1;b&#11;c&#x7f;d&#xfdd0;e&#xffff;f&#x10fffe;g"), "abcdefg");
        assert_eq!(u("&#9;&#10;&#12;&#x1F600;"), "\t\n\u{c}\u{1f600}");
        assert_eq!(u("&#;&#x;&#xg;&# 1;"), "&#;&#x;&#xg;&# 1;");
    }

    #[test]
    fn named_rules() {
        let u = html_unescape;
        assert_eq!(u("&amp;&amp&lt;&lt&AElig;&eacute"), "&&<<\u{c6}\u{e9}");
        assert_eq!(u("&notit; &notin; &copy2024 &ampersand"), "\u{ac}it; \u{2209} \u{a9}2024 &ersand");
        assert_eq!(u("&unknown; & &; &&amp; &AMP; &Amp;"), "&unknown; & &; && & &Amp;");
        assert_eq!(u("&amp;amp;"), "&amp;");
        assert_eq!(u(&u("&amp;amp;lt;")), "&lt;");
        // Names are capped at 32 characters before the optional ';'.
        let long = format!("&{};", "a".repeat(40));
        assert_eq!(u(&long), long);
    }

    #[test]
    fn whitespace_is_pythons() {
        for c in ['\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{1f}', ' ', '\u{85}', '\u{a0}', '\u{3000}'] {
            assert!(is_py_whitespace(c), "{c:?}");
        }
        for c in ['\u{200b}', '\u{feff}', '\u{180e}', 'a', '\0'] {
            assert!(!is_py_whitespace(c), "{c:?}");
        }
    }

    #[test]
    fn clean_collapses_and_strips() {
        assert_eq!(prompt_clean("  a \t\n b\u{a0}\u{3000}c  "), "a b c");
        assert_eq!(prompt_clean(" \n\t "), "");
        assert_eq!(prompt_clean("x&nbsp;&nbsp;y"), "x y");
        assert_eq!(prompt_clean("a&amp;#10;b"), "a b"); // unescaped twice, then a newline
        assert_eq!(prompt_clean("zero\u{200b}width"), "zero\u{200b}width");
    }
}
