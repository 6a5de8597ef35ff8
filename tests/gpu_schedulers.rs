//! The device latent update equals the CPU executor bit for bit (the CPU executor is checked
//! against the diffusers fixtures in tests/schedulers.rs), over whole trajectories, f32 and bf16
//! model outputs, UniPC and Euler.

mod common;

use wanrt::models::schedulers::{f32_to_bf16_bits, CpuLatents, DeviceLatents, Euler, HostModelOutput, UniPc, UniPcOptions};
use wanrt::{DType, Tensor};

const N: usize = 100_003;

#[test]
fn unipc_and_euler_trajectories_match_the_cpu_executor() {
    let Some(dev) = common::gpu("scheduler trajectories") else { return };
    let mut rng = common::rng("scheduler trajectories");
    for steps in [10usize, 50] {
        for bf16 in [false, true] {
            let x0 = common::randn(&mut rng, N, 1.0);
            let outputs: Vec<Vec<f32>> = (0..steps).map(|_| common::randn(&mut rng, N, 1.0)).collect();
            let dt = if bf16 { DType::BF16 } else { DType::F32 };
            let outputs: Vec<Vec<f32>> = outputs.iter().map(|o| common::quantize(o, dt)).collect();
            let bits: Vec<Vec<u16>> = outputs.iter().map(|o| o.iter().map(|v| f32_to_bf16_bits(*v)).collect()).collect();

            // UniPC
            let opts = UniPcOptions::new(5.0);
            let mut cpu = UniPc::<CpuLatents>::new(steps, &opts).unwrap();
            let mut gpu = UniPc::<DeviceLatents>::new(steps, &opts).unwrap();
            let mut back = DeviceLatents::new(dev.clone());
            let mut xc = x0.clone();
            let mut xg = Tensor::from_f32(&dev, &[N], DType::F32, &x0).unwrap();
            for k in 0..steps {
                let v = if bf16 { HostModelOutput::Bf16(&bits[k]) } else { HostModelOutput::F32(&outputs[k]) };
                cpu.step(&mut CpuLatents, v, &mut xc).unwrap();
                let vg = Tensor::from_f32(&dev, &[N], dt, &outputs[k]).unwrap();
                gpu.step(&mut back, &vg, &mut xg).unwrap();
                let got = xg.to_f32_vec().unwrap();
                let diff = got.iter().zip(&xc).position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(diff.is_none(), "UniPC {steps} steps bf16={bf16} step {k}: element {:?} differs", diff);
            }
            let vg = Tensor::from_f32(&dev, &[N], dt, &outputs[0]).unwrap();
            assert!(gpu.step(&mut back, &vg, &mut xg).is_err(), "a step past the end is an error");

            // Euler
            let mut cpu = Euler::<CpuLatents>::new(steps, 3.0).unwrap();
            let mut gpu = Euler::<DeviceLatents>::new(steps, 3.0).unwrap();
            let mut xc = x0.clone();
            let mut xg = Tensor::from_f32(&dev, &[N], DType::F32, &x0).unwrap();
            for k in 0..steps {
                let v = if bf16 { HostModelOutput::Bf16(&bits[k]) } else { HostModelOutput::F32(&outputs[k]) };
                cpu.step(&mut CpuLatents, v, &mut xc).unwrap();
                let vg = Tensor::from_f32(&dev, &[N], dt, &outputs[k]).unwrap();
                gpu.step(&mut back, &vg, &mut xg).unwrap();
            }
            let got = xg.to_f32_vec().unwrap();
            assert!(got.iter().zip(&xc).all(|(a, b)| a.to_bits() == b.to_bits()), "Euler {steps} steps bf16={bf16}");
        }
    }
}

#[test]
fn device_update_checks_its_buffers() {
    let Some(dev) = common::gpu("scheduler buffer checks") else { return };
    let mut gpu = UniPc::<DeviceLatents>::new(10, &UniPcOptions::new(3.0)).unwrap();
    let mut back = DeviceLatents::new(dev.clone());
    let mut x = Tensor::zeros(&dev, &[16], DType::F32).unwrap();
    let v = Tensor::zeros(&dev, &[17], DType::F32).unwrap();
    assert!(gpu.step(&mut back, &v, &mut x).is_err(), "length mismatch");
    let v = Tensor::zeros(&dev, &[16], DType::F16).unwrap();
    assert!(gpu.step(&mut back, &v, &mut x).is_err(), "f16 model output is not supported");
}
