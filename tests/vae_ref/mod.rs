//! The VAE algorithm of models/vae on the CPU in f64 (see tests/vae_cpu_reference.rs): channels-last
//! activations, the conv contract of `ops::conv3d`, the weights as `ChannelsLastSource` uploads them,
//! and the chunking with the causal cache rules of `models/vae/exec.rs`. Shared by the CPU test and the
//! GPU tests that run the model at sizes the fixture does not cover.
#![allow(dead_code)]
// Reference loops index several tensors by the same coordinates.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::sync::Arc;

use wanrt::models::vae::load::ChannelsLastSource;
use wanrt::models::vae::VaeConfig;
use wanrt::runtime::offload::{TensorSpec, WeightSource};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::{SafeTensorsFile, WeightStore};
use wanrt::DType;

/// One sample's activation, channels-last [T, H, W, C].
#[derive(Clone, Debug)]
pub struct Act {
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub v: Vec<f64>,
}

impl Act {
    pub fn zeros(t: usize, h: usize, w: usize, c: usize) -> Act {
        Act { t, h, w, c, v: vec![0.0; t * h * w * c] }
    }
    pub fn frames(&self, start: usize, n: usize) -> Act {
        let f = self.h * self.w * self.c;
        Act { t: n, v: self.v[start * f..(start + n) * f].to_vec(), ..*self }
    }
    pub fn cat(&self, o: &Act) -> Act {
        let mut v = self.v.clone();
        v.extend_from_slice(&o.v);
        Act { t: self.t + o.t, v, ..*self }
    }
}

pub struct Weights {
    pub store: Arc<WeightStore>,
    pub src: ChannelsLastSource,
}

impl Weights {
    /// A tensor as the engine uploads it (conv weights channels-last), in f64.
    fn get(&self, key: &str) -> Vec<f64> {
        let shape = self.store.info(key).unwrap_or_else(|e| panic!("{e}")).shape.to_vec();
        let spec = TensorSpec::new(key, &shape, DType::F32);
        let mut buf = vec![0u8; shape.iter().product::<usize>() * 4];
        self.src.read_into(&spec, &mut buf).unwrap();
        bytes_to_f32(&buf, DType::F32).into_iter().map(f64::from).collect()
    }
    fn shape(&self, key: &str) -> Vec<usize> {
        self.store.info(key).unwrap().shape.to_vec()
    }
}

/// `ops::conv3d`'s contract: logical time [pad_t zeros ; prev ; x], spatial zeros before (top, left)
/// and past the edges; weights [Cout, kt, kh, kw, Cin].
#[allow(clippy::too_many_arguments)]
pub fn conv(x: &Act, prev: Option<&Act>, w: &[f64], b: &[f64], cout: usize, k: (usize, usize, usize), pad_t: usize, pad: ((usize, usize), (usize, usize)), s: (usize, usize, usize)) -> Act {
    let p = prev.map_or(0, |p| p.t);
    let (kt, kh, kw) = k;
    let to = (pad_t + p + x.t - kt) / s.0 + 1;
    let ho = (x.h + pad.0 .0 + pad.0 .1 - kh) / s.1 + 1;
    let wo = (x.w + pad.1 .0 + pad.1 .1 - kw) / s.2 + 1;
    let mut out = Act::zeros(to, ho, wo, cout);
    let cin = x.c;
    for ot in 0..to {
        for oh in 0..ho {
            for ow in 0..wo {
                for co in 0..cout {
                    let mut acc = b[co];
                    for dt in 0..kt {
                        let lt = (ot * s.0 + dt) as isize - pad_t as isize;
                        if lt < 0 {
                            continue;
                        }
                        let lt = lt as usize;
                        let (src, f) = if lt < p { (prev.unwrap(), lt) } else { (x, lt - p) };
                        for dh in 0..kh {
                            let hi = (oh * s.1 + dh) as isize - pad.0 .0 as isize;
                            if hi < 0 || hi >= x.h as isize {
                                continue;
                            }
                            for dw in 0..kw {
                                let wi = (ow * s.2 + dw) as isize - pad.1 .0 as isize;
                                if wi < 0 || wi >= x.w as isize {
                                    continue;
                                }
                                let xo = ((f * x.h + hi as usize) * x.w + wi as usize) * cin;
                                let wo_ = (((co * kt + dt) * kh + dh) * kw + dw) * cin;
                                for ci in 0..cin {
                                    acc += src.v[xo + ci] * w[wo_ + ci];
                                }
                            }
                        }
                    }
                    out.v[((ot * ho + oh) * wo + ow) * cout + co] = acc;
                }
            }
        }
    }
    out
}

pub fn l2_norm(x: &Act, gamma: &[f64], silu: bool) -> Act {
    let mut out = x.clone();
    let scale = (x.c as f64).sqrt();
    for (row, orow) in x.v.chunks(x.c).zip(out.v.chunks_mut(x.c)) {
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for i in 0..x.c {
            let y = row[i] / n * scale * gamma[i];
            orow[i] = if silu { y / (1.0 + (-y).exp()) } else { y };
        }
    }
    out
}

/// The causal cache of `models/vae/exec.rs`.
#[derive(Default)]
pub struct Cache {
    frames: Option<Act>,
    started: bool,
}

impl Cache {
    fn push(&mut self, x: &Act) {
        self.frames = Some(if x.t >= 2 {
            x.frames(x.t - 2, 2)
        } else {
            match &self.frames {
                None => x.clone(),
                Some(c) => c.frames(c.t - 1, 1).cat(x),
            }
        });
        self.started = true;
    }
}

pub struct Model {
    pub w: Weights,
    pub cfg: VaeConfig,
    pub caches: Vec<Cache>,
    pub next: usize,
    pub stages: BTreeMap<String, Vec<Act>>,
}

impl Model {
    fn cache(&mut self) -> usize {
        self.next += 1;
        if self.caches.len() < self.next {
            self.caches.push(Cache::default());
        }
        self.next - 1
    }

    /// A causal k3 (or (3,1,1) padding (1,0,0)) conv with its cache.
    fn cached_conv(&mut self, key: &str, x: &Act) -> Act {
        let shape = self.w.shape(&format!("{key}.weight"));
        let (cout, k) = (shape[0], (shape[2], shape[3], shape[4]));
        let ph = k.1 / 2;
        let i = self.cache();
        let prev = self.caches[i].frames.clone();
        let pad_t = 2 - prev.as_ref().map_or(0, |p| p.t);
        let out = conv(x, prev.as_ref(), &self.w.get(&format!("{key}.weight")), &self.w.get(&format!("{key}.bias")), cout, k, pad_t, ((ph, ph), (ph, ph)), (1, 1, 1));
        self.caches[i].push(x);
        out
    }

    fn conv1x1(&self, key: &str, x: &Act) -> Act {
        let cout = self.w.shape(&format!("{key}.weight"))[0];
        conv(x, None, &self.w.get(&format!("{key}.weight")), &self.w.get(&format!("{key}.bias")), cout, (1, 1, 1), 0, ((0, 0), (0, 0)), (1, 1, 1))
    }

    fn resblock(&mut self, p: &str, x: &Act) -> Act {
        let h = if self.w.store.contains(&format!("{p}.conv_shortcut.weight")) { self.conv1x1(&format!("{p}.conv_shortcut"), x) } else { x.clone() };
        let a = l2_norm(x, &self.w.get(&format!("{p}.norm1.gamma")), true);
        let b = self.cached_conv(&format!("{p}.conv1"), &a);
        let b = l2_norm(&b, &self.w.get(&format!("{p}.norm2.gamma")), true);
        let mut o = self.cached_conv(&format!("{p}.conv2"), &b);
        o.v.iter_mut().zip(&h.v).for_each(|(a, b)| *a += b);
        o
    }

    fn attention(&self, p: &str, x: &Act) -> Act {
        let c = x.c;
        let hw = x.h * x.w;
        let n = l2_norm(x, &self.w.get(&format!("{p}.norm.gamma")), false);
        let (wq, bq) = (self.w.get(&format!("{p}.to_qkv.weight")), self.w.get(&format!("{p}.to_qkv.bias")));
        let (wp, bp) = (self.w.get(&format!("{p}.proj.weight")), self.w.get(&format!("{p}.proj.bias")));
        let mut out = x.clone();
        for f in 0..x.t {
            let tok = &n.v[f * hw * c..(f + 1) * hw * c];
            let lin = |w: &[f64], b: &[f64], rows: &[f64], o: usize, off: usize| -> Vec<f64> {
                rows.chunks(c).flat_map(|r| (0..o).map(move |j| b[off + j] + (0..c).map(|i| r[i] * w[(off + j) * c + i]).sum::<f64>())).collect()
            };
            let (q, k, v) = (lin(&wq, &bq, tok, c, 0), lin(&wq, &bq, tok, c, c), lin(&wq, &bq, tok, c, 2 * c));
            let mut o = vec![0f64; hw * c];
            for i in 0..hw {
                let s: Vec<f64> = (0..hw).map(|j| (0..c).map(|d| q[i * c + d] * k[j * c + d]).sum::<f64>() / (c as f64).sqrt()).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..hw {
                    for d in 0..c {
                        o[i * c + d] += e[j] / z * v[j * c + d];
                    }
                }
            }
            let pr = lin(&wp, &bp, &o, c, 0);
            for (dst, add) in out.v[f * hw * c..(f + 1) * hw * c].iter_mut().zip(pr) {
                *dst += add;
            }
        }
        out
    }

    fn mid(&mut self, p: &str, x: &Act) -> Act {
        let x = self.resblock(&format!("{p}.resnets.0"), x);
        let x = self.attention(&format!("{p}.attentions.0"), &x);
        self.resblock(&format!("{p}.resnets.1"), &x)
    }

    fn resample(&mut self, p: &str, x: &Act, mode: &str) -> Act {
        let key = format!("{p}.resample.1");
        let shape = self.w.shape(&format!("{key}.weight"));
        let cout = shape[0];
        let (w, b) = (self.w.get(&format!("{key}.weight")), self.w.get(&format!("{key}.bias")));
        match mode {
            "up2d" | "up3d" => {
                let mut y = x.clone();
                if mode == "up3d" {
                    let i = self.cache();
                    if !self.caches[i].started {
                        self.caches[i].started = true;
                    } else {
                        self.next -= 1;
                        let d = self.cached_conv(&format!("{p}.time_conv"), x);
                        // Frame 2t + j is channels [jC, (j+1)C) of frame t.
                        let c = x.c;
                        let mut z = Act::zeros(2 * x.t, x.h, x.w, c);
                        for t in 0..x.t {
                            for px in 0..x.h * x.w {
                                for j in 0..2 {
                                    for ch in 0..c {
                                        z.v[((2 * t + j) * x.h * x.w + px) * c + ch] = d.v[(t * x.h * x.w + px) * 2 * c + j * c + ch];
                                    }
                                }
                            }
                        }
                        y = z;
                    }
                }
                let mut u = Act::zeros(y.t, 2 * y.h, 2 * y.w, y.c);
                for t in 0..y.t {
                    for oh in 0..2 * y.h {
                        for ow in 0..2 * y.w {
                            for ch in 0..y.c {
                                u.v[((t * 2 * y.h + oh) * 2 * y.w + ow) * y.c + ch] = y.v[((t * y.h + oh / 2) * y.w + ow / 2) * y.c + ch];
                            }
                        }
                    }
                }
                conv(&u, None, &w, &b, cout, (1, 3, 3), 0, ((1, 1), (1, 1)), (1, 1, 1))
            }
            _ => {
                let s = conv(x, None, &w, &b, cout, (1, 3, 3), 0, ((0, 1), (0, 1)), (1, 2, 2));
                if mode == "down2d" {
                    return s;
                }
                let i = self.cache();
                let Some(prev) = self.caches[i].frames.clone() else {
                    self.caches[i].frames = Some(s.frames(s.t - 1, 1));
                    return s;
                };
                let key = format!("{p}.time_conv");
                let out = conv(&s, Some(&prev), &self.w.get(&format!("{key}.weight")), &self.w.get(&format!("{key}.bias")), cout, (3, 1, 1), 0, ((0, 0), (0, 0)), (2, 1, 1));
                self.caches[i].frames = Some(s.frames(s.t - 1, 1));
                out
            }
        }
    }

    fn stage(&mut self, name: &str, x: &Act) {
        self.stages.entry(name.to_string()).or_default().push(x.clone());
    }

    pub fn encode_chunk(&mut self, x: &Act) -> Act {
        self.next = 0;
        let mut x = self.cached_conv("encoder.conv_in", x);
        self.stage("encoder.conv_in", &x);
        let cfg = self.cfg.clone();
        let mut i = 0;
        for lvl in 0..cfg.dim_mult.len() {
            for _ in 0..cfg.num_res_blocks {
                x = self.resblock(&format!("encoder.down_blocks.{i}"), &x);
                self.stage(&format!("encoder.down_blocks.{i}"), &x);
                i += 1;
            }
            if lvl != cfg.dim_mult.len() - 1 {
                let mode = if cfg.temperal_downsample[lvl] { "down3d" } else { "down2d" };
                x = self.resample(&format!("encoder.down_blocks.{i}"), &x, mode);
                self.stage(&format!("encoder.down_blocks.{i}"), &x);
                i += 1;
            }
        }
        x = self.mid("encoder.mid_block", &x);
        self.stage("encoder.mid_block", &x);
        let n = l2_norm(&x, &self.w.get("encoder.norm_out.gamma"), true);
        let x = self.cached_conv("encoder.conv_out", &n);
        self.stage("encoder.conv_out", &x);
        let q = self.conv1x1("quant_conv", &x);
        self.stage("quant_conv", &q);
        q
    }

    pub fn decode_chunk(&mut self, z: &Act) -> Act {
        self.next = 0;
        let x = self.conv1x1("post_quant_conv", z);
        self.stage("post_quant_conv", &x);
        let mut x = self.cached_conv("decoder.conv_in", &x);
        self.stage("decoder.conv_in", &x);
        x = self.mid("decoder.mid_block", &x);
        self.stage("decoder.mid_block", &x);
        let cfg = self.cfg.clone();
        let up = cfg.temperal_upsample();
        for i in 0..cfg.dim_mult.len() {
            for r in 0..=cfg.num_res_blocks {
                x = self.resblock(&format!("decoder.up_blocks.{i}.resnets.{r}"), &x);
            }
            if i != cfg.dim_mult.len() - 1 {
                x = self.resample(&format!("decoder.up_blocks.{i}.upsamplers.0"), &x, if up[i] { "up3d" } else { "up2d" });
            }
            self.stage(&format!("decoder.up_blocks.{i}"), &x);
        }
        let n = l2_norm(&x, &self.w.get("decoder.norm_out.gamma"), true);
        let x = self.cached_conv("decoder.conv_out", &n);
        self.stage("decoder.conv_out", &x);
        x
    }
}

pub fn read(file: &SafeTensorsFile, name: &str) -> (Vec<usize>, Vec<f64>) {
    let info = file.info(name).unwrap();
    (info.shape.clone(), bytes_to_f32(file.bytes(name).unwrap(), DType::F32).into_iter().map(f64::from).collect())
}

/// [1, C, T, H, W] → channels-last.
pub fn to_cl((s, v): &(Vec<usize>, Vec<f64>)) -> Act {
    let (c, t, h, w) = (s[1], s[2], s[3], s[4]);
    let mut a = Act::zeros(t, h, w, c);
    for ch in 0..c {
        for f in 0..t {
            for p in 0..h * w {
                a.v[(f * h * w + p) * c + ch] = v[(ch * t + f) * h * w + p];
            }
        }
    }
    a
}

pub fn from_cl(a: &Act) -> Vec<f64> {
    let mut v = vec![0f64; a.v.len()];
    for f in 0..a.t {
        for p in 0..a.h * a.w {
            for ch in 0..a.c {
                v[(ch * a.t + f) * a.h * a.w + p] = a.v[(f * a.h * a.w + p) * a.c + ch];
            }
        }
    }
    v
}

pub fn rel_rms(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (n, d) = a.iter().zip(b).fold((0f64, 0f64), |(n, d), (x, y)| (n + (x - y).powi(2), d + y * y));
    (n / d).sqrt()
}


impl Model {
    /// The fixture's weights and config (any size of input runs with them).
    pub fn fixture() -> Model {
        let dir = crate::common::fixture("vae").join("vae");
        let store = Arc::new(WeightStore::open(&dir).unwrap());
        let cfg = VaeConfig::from_path(&dir).unwrap();
        Model { w: Weights { src: ChannelsLastSource(store.clone()), store }, cfg, caches: Vec::new(), next: 0, stages: BTreeMap::new() }
    }

    /// `_encode`: frame 0, then 4 at a time; the moments, channels-last.
    pub fn encode(&mut self, video: &Act) -> Act {
        self.caches.clear();
        let mut out: Option<Act> = None;
        let mut i = 0;
        while i < video.t {
            let n = if i == 0 { 1 } else { 4 };
            let o = self.encode_chunk(&video.frames(i, n));
            out = Some(match out {
                None => o,
                Some(a) => a.cat(&o),
            });
            i += n;
        }
        out.unwrap()
    }

    /// `_decode`: one latent frame at a time, clamped to [-1, 1]; channels-last.
    pub fn decode(&mut self, z: &Act) -> Act {
        self.caches.clear();
        let mut out: Option<Act> = None;
        for f in 0..z.t {
            let o = self.decode_chunk(&z.frames(f, 1));
            out = Some(match out {
                None => o,
                Some(a) => a.cat(&o),
            });
        }
        let mut out = out.unwrap();
        out.v.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        out
    }
}
