//! transformers' `UMT5EncoderModel` (modeling_umt5.py) on the runtime, as Wan's pipelines run it
//! (`UMT5Stack`, `UMT5Block`, `UMT5Attention`, `UMT5LayerFF`): the token embedding gathered on the
//! host, 24 blocks of RMS-normed self-attention with a per-layer relative position bias and no 1/√d
//! scaling, a gated-GELU feed-forward, and the final norm. Then diffusers' post-processing
//! (`_get_t5_prompt_embeds`): rows past each prompt's length are zeros.
//!
//! Offload units per block: `layer.0` (its RMSNorm, q/k/v stacked for one batched GEMM, and the
//! relative attention bias table), `layer.0.SelfAttention.o`, `layer.1` (its RMSNorm and wi_0/wi_1
//! stacked), `layer.1.DenseReluDense.wo`; then `encoder.final_layer_norm`. The 256384-row embedding
//! table is not a unit: only the prompt's rows are read from host memory (see [`TokenEmbedding`]).

use std::sync::Arc;

use super::config::Umt5Config;
use crate::nn::{linear_group, Linear, Norm};
use crate::wan::Precision;
use wanrt_runtime::arena::{ArenaPlan, Buf};
use wanrt_runtime::offload::{Engine, Forward, ModelUnits, Param, VarBuilder};
use wanrt_runtime::ops::{self, relative_bias::bucket_table};
use wanrt_runtime::tensor::f32_to_bytes;
use wanrt_runtime::weights::{convert, WeightStore};
use wanrt_runtime::{DType, Error, Result, Tensor};

/// The checkpoint key of the token embedding.
pub const EMBEDDING_KEY: &str = "shared.weight";
/// Its tied alias (`encoder.embed_tokens` is `shared` in transformers): a checkpoint holds either or
/// both, with the same values.
pub const EMBEDDING_ALIAS: &str = "encoder.embed_tokens.weight";

/// The key a checkpoint stores the token embedding under (`shared.weight` when present, else the
/// alias; `shared.weight` when neither is, so the error names it).
pub fn embedding_key(store: &WeightStore) -> &'static str {
    if !store.contains(EMBEDDING_KEY) && store.contains(EMBEDDING_ALIAS) {
        EMBEDDING_ALIAS
    } else {
        EMBEDDING_KEY
    }
}

/// Keys of a `UMT5EncoderModel` checkpoint no encoder computation reads (the alias when both are
/// stored).
pub fn is_unused_key(key: &str) -> bool {
    key == EMBEDDING_ALIAS
}

/// The token embedding's rows, read on the host for the ids of a batch.
pub enum TokenEmbedding {
    /// From a checkpoint (`shared.weight`), converted to the compute dtype row by row.
    Store(Arc<WeightStore>),
    /// Deterministic synthesized values (benchmarks at the published shapes).
    Synth { seed: u64 },
}

impl TokenEmbedding {
    /// Rows `ids` of the [vocab, d_model] table as `dtype` bytes, back to back.
    pub fn gather(&self, ids: &[i64], vocab: usize, d_model: usize, dtype: DType) -> Result<Vec<u8>> {
        let row_out = d_model * dtype.size();
        let mut out = vec![0u8; ids.len() * row_out];
        for (k, &id) in ids.iter().enumerate() {
            let row = usize::try_from(id).ok().filter(|&r| r < vocab).ok_or_else(|| Error::invalid(format!("token id {id} is outside the {vocab}-row embedding")))?;
            let dst = &mut out[k * row_out..(k + 1) * row_out];
            match self {
                TokenEmbedding::Store(store) => {
                    let t = store.expect(embedding_key(store), &[vocab, d_model])?;
                    let row_in = d_model * t.dtype.size();
                    let src = t.data.get(row * row_in..(row + 1) * row_in).ok_or_else(|| Error::invalid(format!("{}: row {row} outside the stored data", t.name)))?;
                    convert(src, t.dtype, dst, dtype)?;
                }
                TokenEmbedding::Synth { seed } => {
                    // Values in ±1, like a trained embedding's scale; depends only on (seed, row, column).
                    let v: Vec<f32> = (0..d_model).map(|c| synth_value(*seed, row, c)).collect();
                    dst.copy_from_slice(&f32_to_bytes(&v, dtype));
                }
            }
        }
        Ok(out)
    }
}

fn synth_value(seed: u64, row: usize, col: usize) -> f32 {
    let mut x = seed ^ ((row as u64) << 20) ^ col as u64;
    x = (x ^ (x >> 33)).wrapping_mul(0xff51afd7ed558ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ceb9fe1a85ec53);
    ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

/// `layer.0`: the pre-attention RMSNorm, q/k/v (no bias) and the layer's own bias table.
pub struct SelfAttentionLayer {
    pub layer_norm: Norm,
    /// q, k, v.
    pub qkv: [Linear; 3],
    /// `relative_attention_bias.weight` [num_buckets, num_heads].
    pub relative_attention_bias: Param,
    pub o: Linear,
}

/// `layer.1`: the pre-FFN RMSNorm, wi_0 (GELU branch) and wi_1 stacked, then wo.
pub struct FeedForwardLayer {
    pub layer_norm: Norm,
    /// wi_0, wi_1.
    pub wi: [Linear; 2],
    pub wo: Linear,
}

pub struct Umt5Block {
    pub attention: SelfAttentionLayer,
    pub ff: FeedForwardLayer,
}

/// The encoder of `UMT5EncoderModel`.
pub struct Umt5EncoderModel {
    pub cfg: Umt5Config,
    pub precision: Precision,
    units: ModelUnits,
    pub blocks: Vec<Umt5Block>,
    pub final_layer_norm: Norm,
}

/// Token ids and attention mask of a batch, as the tokenizer gives them (`[B][L]`).
pub struct TokenBatch {
    pub ids: Vec<Vec<i64>>,
    pub mask: Vec<Vec<i64>>,
}

impl TokenBatch {
    /// (B, L), checked rectangular, L ≥ 1, masks of 0/1.
    pub fn shape(&self) -> Result<(usize, usize)> {
        let b = self.ids.len();
        let l = self.ids.first().map_or(0, Vec::len);
        if b == 0 || l == 0 || self.mask.len() != b || self.ids.iter().chain(&self.mask).any(|r| r.len() != l) {
            return Err(Error::invalid(format!("token batch: {b} id rows and {} mask rows must all have the same positive length", self.mask.len())));
        }
        if self.mask.iter().flatten().any(|&m| m != 0 && m != 1) {
            return Err(Error::invalid("token batch: the attention mask holds values other than 0 and 1"));
        }
        Ok((b, l))
    }

    /// Real tokens per prompt (the mask's ones, EOS included).
    pub fn seq_lens(&self) -> Vec<usize> {
        self.mask.iter().map(|m| m.iter().filter(|&&v| v == 1).count()).collect()
    }
}

struct Bufs {
    x: Buf,
    normed: Buf,
    qkv: Buf,
    attn: Buf,
    proj: Buf,
    scores: Buf,
    probs: Buf,
    v32: Buf,
    rowsum: Buf,
    unnormalized: Buf,
    mask: Buf,
    bucket: Buf,
    wi: Buf,
    out: Buf,
}

/// The most negative finite value of the compute dtype: transformers' additive mask value
/// (`torch.finfo(dtype).min`).
fn mask_value(dt: DType) -> f32 {
    match dt {
        DType::F32 => f32::MIN,
        DType::BF16 => half::bf16::MIN.to_f32(),
        DType::F16 => half::f16::MIN.to_f32(),
    }
}

impl Umt5EncoderModel {
    /// Declares the encoder (no device, no weights). bf16 and fp16 keep nothing in fp32 (the
    /// `_keep_in_fp32_modules = ["wo"]` of transformers applies to fp16 loading; we follow the
    /// pipeline's bf16 or the official fp32).
    pub fn new(cfg: &Umt5Config, precision: Precision) -> Result<Umt5EncoderModel> {
        cfg.validate()?;
        let (d, inner, f) = (cfg.d_model, cfg.inner_dim(), cfg.d_ff);
        let dt = precision.compute();
        let vb = VarBuilder::new(move |_| dt);
        let enc = vb.pp("encoder");
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let blk = enc.pp("block").pp(i).block(i);
                let l0 = blk.pp("layer").pp(0);
                let sa = l0.pp("SelfAttention");
                let (qkv, relative_attention_bias, layer_norm) = l0.unit(|u| {
                    // Weights first so they pack back to back for the stacked GEMM.
                    let qkv = ["q", "k", "v"].map(|n| Linear::declare(u, &sa.pp(n), d, inner, false));
                    let table = u.param(&sa.pp("relative_attention_bias"), "weight", &[cfg.relative_attention_num_buckets, cfg.num_heads]);
                    (qkv, table, Norm::declare(u, &l0.pp("layer_norm"), d, false))
                });
                let o = sa.pp("o");
                let o = o.unit(|u| Linear::declare(u, &o, inner, d, false));
                let l1 = blk.pp("layer").pp(1);
                let ffn = l1.pp("DenseReluDense");
                let (wi, ln1) = l1.unit(|u| {
                    let wi = ["wi_0", "wi_1"].map(|n| Linear::declare(u, &ffn.pp(n), d, f, false));
                    (wi, Norm::declare(u, &l1.pp("layer_norm"), d, false))
                });
                let wo = ffn.pp("wo");
                let wo = wo.unit(|u| Linear::declare(u, &wo, f, d, false));
                Umt5Block {
                    attention: SelfAttentionLayer { layer_norm, qkv, relative_attention_bias, o },
                    ff: FeedForwardLayer { layer_norm: ln1, wi, wo },
                }
            })
            .collect();
        let final_layer_norm = Norm::unit(&enc.pp("final_layer_norm"), d, false);
        Ok(Umt5EncoderModel { cfg: cfg.clone(), precision, units: vb.finish()?, blocks, final_layer_norm })
    }

    pub fn units(&self) -> &ModelUnits {
        &self.units
    }

    fn plan(&self, b: usize, l: usize) -> (ArenaPlan, Bufs) {
        let c = &self.cfg;
        let dt = self.precision.compute();
        let (d, inner, f) = (c.d_model, c.inner_dim(), c.d_ff);
        let mut p = ArenaPlan::new();
        let bufs = Bufs {
            x: p.buffer("umt5 residual", &[b, l, d], dt),
            normed: p.buffer("umt5 normed", &[b, l, d], dt),
            qkv: p.buffer("umt5 qkv", &[3, b * l, inner], dt),
            attn: p.buffer("umt5 attention", &[b, l, inner], dt),
            proj: p.buffer("umt5 projection", &[b, l, d], dt),
            scores: p.buffer("umt5 attention scores", &[b, c.num_heads, l, l], DType::F32),
            probs: p.buffer("umt5 attention probabilities", &[b, c.num_heads, l, l], DType::F32),
            v32: p.buffer("umt5 values, f32", &[b, l, inner], DType::F32),
            rowsum: p.buffer("umt5 softmax sums", &[b, c.num_heads, l], DType::F32),
            unnormalized: p.buffer("umt5 attention, unnormalized", &[b, l, c.inner_dim()], DType::F32),
            mask: p.buffer("umt5 mask", &[b, l], DType::F32),
            bucket: p.buffer("umt5 buckets", &[2 * l - 1], DType::F32),
            wi: p.buffer("umt5 ffn hidden", &[2, b * l, f], dt),
            out: p.buffer("prompt_embeds", &[b, l, d], dt),
        };
        (p, bufs)
    }

    /// Device bytes an encode of `b` prompts of `l` tokens allocates (its arena), for the planner.
    pub fn activation_bytes(&self, b: usize, l: usize) -> Result<u64> {
        if b == 0 || l == 0 {
            return Err(Error::invalid("umt5: a batch needs at least one prompt of one token"));
        }
        self.plan(b, l).0.bytes()
    }

    /// [`Self::activation_bytes`] plus cuBLASLt's workspace and a tenth for the pool's fragmentation.
    pub fn activation_peak(&self, b: usize, l: usize) -> Result<u64> {
        let peak = self.activation_bytes(b, l)? + (32 << 20);
        Ok(peak + peak / 10)
    }

    /// `last_hidden_state` with rows past each prompt's length zeroed: the pipeline's prompt
    /// embeddings (B, L, d_model) in the compute dtype. `capture` receives each block's output
    /// (`encoder.block.{i}.out`) and `last_hidden_state`.
    pub fn forward(&self, engine: &Engine, embedding: &TokenEmbedding, tokens: &TokenBatch, mut capture: Option<&mut crate::wan::transformer::Capture>) -> Result<Tensor> {
        if engine.units().units() != self.units.units() {
            return Err(Error::invalid("umt5: the offload engine was made for other weight units (another config or precision)"));
        }
        let (b, l) = tokens.shape()?;
        let c = &self.cfg;
        let dt = self.precision.compute();
        let ids: Vec<i64> = tokens.ids.iter().flatten().copied().collect();
        let rows = embedding.gather(&ids, c.vocab_size, c.d_model, dt)?;
        let dev = engine.device().clone();
        engine.forward(|fw| {
            let _r = ops::range("umt5.forward");
            let (plan, bufs) = self.plan(b, l);
            let a = plan.allocate(&dev)?;
            let x = a.get(bufs.x);
            x.write_bytes(&rows)?;
            let mv = mask_value(dt);
            let mask: Vec<f32> = tokens.mask.iter().flatten().map(|&m| if m == 1 { 0.0 } else { mv }).collect();
            a.get(bufs.mask).write_bytes(&f32_to_bytes(&mask, DType::F32))?;
            let buckets = bucket_table(l, l, c.relative_attention_num_buckets, c.relative_attention_max_distance);
            a.get(bufs.bucket).write_bytes(&f32_to_bytes(&buckets, DType::F32))?;
            let mut cap = |name: &str, t: &Tensor| -> Result<()> {
                if let Some(cmap) = capture.as_deref_mut() {
                    let snap = Tensor::empty_named(&dev, t.shape(), t.dtype(), "capture")?;
                    snap.copy_from(t)?;
                    cmap.insert(name.to_string(), snap);
                }
                Ok(())
            };
            for (i, blk) in self.blocks.iter().enumerate() {
                let _r = ops::range("umt5.block");
                self.block(fw, blk, &a, &bufs, b, l)?;
                cap(&format!("encoder.block.{i}.out"), x)?;
            }
            let out = a.get(bufs.out);
            let g = fw.unit(self.final_layer_norm.weight.unit())?;
            self.final_layer_norm.t5_layer_norm(&g, x, c.layer_norm_epsilon as f32, out)?;
            drop(g);
            cap("last_hidden_state", out)?;
            // diffusers keeps rows [0, seq_len) of each prompt and zeros the rest.
            for (bi, &n) in tokens.seq_lens().iter().enumerate() {
                if n < l {
                    out.narrow(0, bi, 1)?.narrow(1, n, l - n)?.fill_bytes(0)?;
                }
            }
            Ok(out.clone())
        })
    }

    fn block(&self, fw: &Forward<'_>, blk: &Umt5Block, a: &wanrt_runtime::arena::Arena, bufs: &Bufs, b: usize, l: usize) -> Result<()> {
        let c = &self.cfg;
        let eps = c.layer_norm_epsilon as f32;
        let (x, normed, qkv, attn, proj) = (a.get(bufs.x), a.get(bufs.normed), a.get(bufs.qkv), a.get(bufs.attn), a.get(bufs.proj));
        let heads4 = |t: &Tensor| t.reshape(&[b, l, c.num_heads, c.d_kv]);
        {
            let at = &blk.attention;
            let g = fw.unit(at.qkv[0].weight.unit())?;
            at.layer_norm.t5_layer_norm(&g, x, eps, normed)?;
            linear_group(&g, &at.qkv, normed, qkv)?;
            let part = |k: usize| qkv.narrow(0, k, 1)?.reshape(&[b, l, c.inner_dim()]);
            // Scores, bias, softmax and p·v in f32 with one rounding at the end (what torch's math SDPA
            // does for bf16; the fused backends differ from it by less than bf16 rounding), on cuBLASLt.
            // T5 attention is unscaled (the 1/√d is folded into the trained weights).
            let (scores, probs, rowsum, o32, v32) = (a.get(bufs.scores), a.get(bufs.probs), a.get(bufs.rowsum), a.get(bufs.unnormalized), a.get(bufs.v32));
            ops::attention_scores(&heads4(&part(0)?)?, &heads4(&part(1)?)?, 1.0, scores)?;
            ops::relative_bias_softmax(scores, g.get(at.relative_attention_bias)?, a.get(bufs.bucket), a.get(bufs.mask), probs, rowsum)?;
            ops::cast(&part(2)?, v32)?;
            ops::attention_apply(probs, &heads4(v32)?, &heads4(o32)?)?;
            ops::attention_normalize(&heads4(o32)?, rowsum, &heads4(attn)?)?;
        }
        blk.attention.o.run(fw, attn, proj)?;
        ops::add(x, proj, x)?;
        {
            let ff = &blk.ff;
            let g = fw.unit(ff.wi[0].weight.unit())?;
            ff.layer_norm.t5_layer_norm(&g, x, eps, normed)?;
            linear_group(&g, &ff.wi, normed, a.get(bufs.wi))?;
        }
        let wi = a.get(bufs.wi);
        let (h0, h1) = (wi.narrow(0, 0, 1)?, wi.narrow(0, 1, 1)?);
        // gelu_new, rounded op by op as transformers evaluates it in bf16.
        ops::gelu_new(&h0, &h0)?;
        ops::mul(&h0, &h1, &h0)?;
        blk.ff.wo.run(fw, &h0.reshape(&[b, l, c.d_ff])?, proj)?;
        ops::add(x, proj, x)
    }
}
