//! 3D convolution over channels-last video tensors (the Wan VAE's causal convs). Minimal module: the
//! geometry of the shared contract and the tensor-core paths (mma.sync; wgmma on sm_90a, opt-in); the
//! dispatcher (`conv3d`) and the portable kernel come with the other half of the conv work.

pub mod mma;
pub mod wgmma;

/// Padding and strides of a conv3d. The logical time axis is `[pad_t zero frames ; prev's P frames ;
/// x's T frames]`, so `To = (pad_t + P + T - kt) / st + 1`; `Ho = (H + pad_h.0 + pad_h.1 - kh) / sh + 1`
/// and `Wo` likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dGeom {
    /// Zero frames before prev + x (causal padding).
    pub pad_t: usize,
    /// (top, bottom).
    pub pad_h: (usize, usize),
    /// (left, right).
    pub pad_w: (usize, usize),
    /// (t, h, w).
    pub stride: (usize, usize, usize),
}
