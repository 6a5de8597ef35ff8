//! Scheduler API: invalid arguments give clear errors, the shift policy, the scheduler config parser,
//! and the `Scheduler` front end.

use std::path::{Path, PathBuf};

use wanrt::models::schedulers::{
    apply_euler_cpu, apply_unipc_cpu, auto_shift, euler_schedule, unipc_schedule, CpuLatents,
    Euler, EulerUpdate, HostModelOutput, ReferenceDevice, Scheduler, SchedulerConfig,
    SchedulerKind, SchedulerSpec, ShiftPolicy, SigmaGrid, UniPc, UniPcOptions, UniPcUpdate,
};
use wanrt::{DType, Error};

fn fixture_dir() -> PathBuf {
    std::env::var_os("WANRT_REPO_ROOT").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).join("tests/fixtures/schedulers")
}

fn err_text<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A scratch folder unique to this test process and test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wanrt-schedulers-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn zero_steps_is_an_error() {
    for r in [
        unipc_schedule(0, 3.0, SigmaGrid::Diffusers, 1000).map(|_| ()),
        unipc_schedule(0, 3.0, SigmaGrid::Official, 1000).map(|_| ()),
        euler_schedule(0, 3.0, 1000).map(|_| ()),
        UniPc::<CpuLatents>::new(0, &UniPcOptions::new(3.0)).map(|_| ()),
        Euler::<CpuLatents>::new(0, 3.0).map(|_| ()),
    ] {
        assert!(err_text(r).contains("at least 1, got 0"));
    }
}

#[test]
fn bad_shifts_are_errors() {
    for shift in [-3.0, 0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = err_text(unipc_schedule(10, shift, SigmaGrid::Diffusers, 1000));
        assert!(
            e.contains("flow shift must be a finite number > 0"),
            "{shift}: {e}"
        );
        let e = err_text(euler_schedule(10, shift, 1000));
        assert!(
            e.contains("flow shift must be a finite number > 0"),
            "{shift}: {e}"
        );
    }
}

#[test]
fn degenerate_grids_are_errors() {
    // A shift so large that the f32 sigmas collapse to 1: λ would be infinite and h zero.
    for grid in [SigmaGrid::Diffusers, SigmaGrid::Official] {
        let e = err_text(unipc_schedule(10, 1e12, grid, 1000));
        assert!(e.contains("degenerate"), "{e}");
    }
    assert!(
        err_text(unipc_schedule(10, 3.0, SigmaGrid::Diffusers, 1)).contains("num_train_timesteps")
    );
}

#[test]
fn stepping_past_the_end_is_an_error() {
    let v = vec![0.25f32; 8];
    let mut x = vec![1.0f32; 8];
    let mut u = UniPc::<CpuLatents>::new(3, &UniPcOptions::new(5.0)).unwrap();
    for _ in 0..3 {
        u.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)
            .unwrap();
    }
    let before = x.clone();
    let e = err_text(u.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x));
    assert!(
        e.contains("step 4 asked for, but the 3-step schedule is finished"),
        "{e}"
    );
    assert_eq!(x, before, "a refused step leaves the latents alone");

    let mut eu = Euler::<CpuLatents>::new(2, 5.0).unwrap();
    for _ in 0..2 {
        eu.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)
            .unwrap();
    }
    let e = err_text(eu.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x));
    assert!(
        e.contains("step 3 asked for, but the 2-step schedule is finished"),
        "{e}"
    );
}

#[test]
fn final_step_lands_on_the_predicted_sample() {
    // σ_N = 0: the last (first-order) step returns m = x − σ·v exactly.
    let mut u = UniPc::<CpuLatents>::new(1, &UniPcOptions::new(3.0)).unwrap();
    let (v, mut x) = (vec![0.5f32, -2.0, 3.0], vec![1.0f32, 0.25, -4.0]);
    let sigma = u.planner().sigmas()[0];
    let m: Vec<f32> = x.iter().zip(&v).map(|(x, v)| x - sigma * v).collect();
    u.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)
        .unwrap();
    assert_eq!(x, m);
}

#[test]
fn mismatched_sizes_are_errors() {
    let mut u = UniPc::<CpuLatents>::new(5, &UniPcOptions::new(3.0)).unwrap();
    let mut x = vec![0.0f32; 8];
    let e = err_text(u.step(&mut CpuLatents, HostModelOutput::F32(&[0.0; 7]), &mut x));
    assert!(
        e.contains("model output has shape [7], expected 8 elements"),
        "{e}"
    );
    assert_eq!(
        u.planner().step_index(),
        0,
        "a refused step does not advance"
    );
    u.step(&mut CpuLatents, HostModelOutput::F32(&[0.0; 8]), &mut x)
        .unwrap();
    let mut bigger = vec![0.0f32; 9];
    let e = err_text(u.step(
        &mut CpuLatents,
        HostModelOutput::F32(&[0.0; 9]),
        &mut bigger,
    ));
    assert!(
        e.contains("earlier steps") && e.contains("expected 8 elements"),
        "{e}"
    );
    let e = err_text(u.step(&mut CpuLatents, HostModelOutput::F32(&[]), &mut Vec::new()));
    assert!(e.contains("empty"), "{e}");

    let mut eu = Euler::<CpuLatents>::new(5, 3.0).unwrap();
    let e = err_text(eu.step(&mut CpuLatents, HostModelOutput::Bf16(&[0; 3]), &mut x));
    assert!(e.contains("model output has shape [3]"), "{e}");

    // The slice executors check every buffer and the plan's dtype.
    let plan = UniPcUpdate {
        predictor_order: 1,
        ..Default::default()
    };
    let (mut m, mut last) = (vec![0.0f32; 8], vec![0.0f32; 8]);
    let e = err_text(apply_unipc_cpu(
        &plan,
        HostModelOutput::F32(&[0.0; 8]),
        &mut x,
        &mut m[..7],
        None,
        &mut last,
    ));
    assert!(e.contains("m_new has shape [7]"), "{e}");
    let e = err_text(apply_unipc_cpu(
        &plan,
        HostModelOutput::F32(&[0.0; 8]),
        &mut x,
        &mut m,
        None,
        &mut last[..2],
    ));
    assert!(e.contains("last has shape [2]"), "{e}");
    let plan2 = UniPcUpdate {
        predictor_order: 2,
        p_r: -1.0,
        ..Default::default()
    };
    let e = err_text(apply_unipc_cpu(
        &plan2,
        HostModelOutput::F32(&[0.0; 8]),
        &mut x,
        &mut m,
        None,
        &mut last,
    ));
    assert!(e.contains("reads m_(k-1)"), "{e}");
    let e = err_text(apply_unipc_cpu(
        &plan,
        HostModelOutput::Bf16(&[0; 8]),
        &mut x,
        &mut m,
        None,
        &mut last,
    ));
    assert!(e.contains("dtype bf16, expected f32"), "{e}");
    let e = err_text(apply_euler_cpu(
        &EulerUpdate {
            v_bf16: 1,
            dt: -0.1,
        },
        HostModelOutput::F32(&[0.0; 8]),
        &mut x,
    ));
    assert!(e.contains("dtype f32, expected bf16"), "{e}");
}

#[test]
fn f16_model_outputs_are_refused() {
    let u = UniPc::<CpuLatents>::new(5, &UniPcOptions::new(3.0)).unwrap();
    assert!(err_text(u.planner().plan(DType::F16)).contains("expected f32 or bf16"));
    let eu = Euler::<CpuLatents>::new(5, 3.0).unwrap();
    assert!(err_text(eu.planner().plan(DType::F16)).contains("expected f32 or bf16"));
}

#[test]
fn reference_device_only_changes_the_bf16_sigma_factor() {
    let mut cpu = UniPcOptions::new(5.0);
    cpu.reference = ReferenceDevice::Cpu;
    let cuda = UniPcOptions::new(5.0);
    let a = UniPc::<CpuLatents>::new(50, &cpu).unwrap();
    let b = UniPc::<CpuLatents>::new(50, &cuda).unwrap();
    assert_eq!(
        a.planner().plan(DType::F32).unwrap(),
        b.planner().plan(DType::F32).unwrap()
    );
    let (pa, pb) = (
        a.planner().plan(DType::BF16).unwrap(),
        b.planner().plan(DType::BF16).unwrap(),
    );
    assert_eq!(pb.sigma, b.planner().sigmas()[0]);
    assert_eq!(pa.sigma, 1.0, "bf16(0.999999) = 1");
    assert_eq!(
        UniPcUpdate {
            sigma: pb.sigma,
            ..pa
        },
        pb
    );
}

#[test]
fn warm_up_and_final_orders() {
    let mut u = UniPc::<CpuLatents>::new(4, &UniPcOptions::new(3.0)).unwrap();
    let (v, mut x) = (vec![0.1f32; 4], vec![1.0f32; 4]);
    let mut orders = Vec::new();
    for _ in 0..4 {
        let p = u.planner().plan(DType::F32).unwrap();
        orders.push((p.corrector_order, p.predictor_order));
        u.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)
            .unwrap();
    }
    // First step: no corrector, first-order predictor; last step: first-order predictor.
    assert_eq!(orders, [(0, 1), (1, 2), (2, 2), (2, 1)]);
}

#[test]
fn scheduler_front_end() {
    let mut s = Scheduler::<CpuLatents>::new(&SchedulerSpec::unipc(5.0), 50).unwrap();
    assert_eq!(s.num_steps(), 50);
    assert_eq!(s.sigmas().len(), 51);
    assert_eq!(s.model_timestep(0).unwrap(), 999.0);
    assert_eq!(s.model_timestep(49).unwrap(), 96.0);
    assert!(err_text(s.model_timestep(50)).contains("50 steps"));
    let e = Scheduler::<CpuLatents>::new(&SchedulerSpec::euler(5.0), 50).unwrap();
    assert_eq!(e.model_timestep(0).unwrap(), 1000.0);
    let mut official = SchedulerSpec::unipc(5.0);
    official.grid = SigmaGrid::Official;
    let o = Scheduler::<CpuLatents>::new(&official, 50).unwrap();
    assert_eq!(o.sigmas()[0], 0.99979985);
    let (v, mut x) = (vec![0.1f32; 4], vec![1.0f32; 4]);
    s.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)
        .unwrap();
    assert_eq!(s.step_index(), 1);
    s.reset();
    assert_eq!(s.step_index(), 0);
}

#[test]
fn config_from_model_folder() {
    let c = SchedulerConfig::from_model_dir(&fixture_dir().join("model_unipc")).unwrap();
    assert_eq!(
        c,
        SchedulerConfig {
            kind: SchedulerKind::UniPc,
            flow_shift: 3.0,
            num_train_timesteps: 1000
        }
    );
    let c = SchedulerConfig::from_model_dir(&fixture_dir().join("model_euler")).unwrap();
    assert_eq!(c.kind, SchedulerKind::FlowMatchEuler);
    assert_eq!(c.flow_shift, 3.0);
    let spec = SchedulerSpec::from_config(&c, 5.0);
    assert_eq!(
        (spec.kind, spec.shift),
        (SchedulerKind::FlowMatchEuler, 5.0)
    );
}

/// The shipped UniPC config with `edit` applied to its JSON object.
fn edited_config(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let path = fixture_dir().join("model_unipc/scheduler/scheduler_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    v.to_string()
}

#[test]
fn config_errors_name_the_file_and_the_problem() {
    let p = Path::new("m/scheduler/scheduler_config.json");
    let missing = edited_config(|o| {
        o.remove("flow_shift");
    });
    let e = err_text(SchedulerConfig::parse(&missing, p));
    assert!(
        e.starts_with("m/scheduler/scheduler_config.json: ") && e.contains("no \"flow_shift\" key"),
        "{e}"
    );

    let e = err_text(SchedulerConfig::parse(
        "{\"_class_name\": \"UniPCMultistep",
        p,
    ));
    assert!(e.contains("not a valid scheduler config"), "{e}");
    let e = err_text(SchedulerConfig::parse("\u{0}\u{1}garbage", p));
    assert!(e.contains("not a valid scheduler config"), "{e}");
    let wrong_type = edited_config(|o| {
        o.insert("flow_shift".into(), "three".into());
    });
    assert!(
        err_text(SchedulerConfig::parse(&wrong_type, p)).contains("not a valid scheduler config")
    );
    let negative = edited_config(|o| {
        o.insert("flow_shift".into(), (-1.0).into());
    });
    assert!(err_text(SchedulerConfig::parse(&negative, p)).contains("finite number > 0"));

    let epsilon = edited_config(|o| {
        o.insert("prediction_type".into(), "epsilon".into());
        o.insert("solver_order".into(), 3.into());
    });
    let e = err_text(SchedulerConfig::parse(&epsilon, p));
    assert!(
        e.contains("prediction_type = \"epsilon\"") && e.contains("solver_order = 3"),
        "{e}"
    );
    let no_class = edited_config(|o| {
        o.remove("_class_name");
    });
    assert!(err_text(SchedulerConfig::parse(&no_class, p)).contains("_class_name"));
    let ddim = edited_config(|o| {
        o.insert("_class_name".into(), "DDIMScheduler".into());
    });
    assert!(
        err_text(SchedulerConfig::parse(&ddim, p)).contains("\"DDIMScheduler\" is not supported")
    );

    // Files: a missing one is an I/O error naming it; a garbage one a parse error naming it.
    let dir = scratch("config_errors");
    let e = err_text(SchedulerConfig::from_model_dir(&dir));
    assert!(e.contains("scheduler_config.json"), "{e}");
    std::fs::create_dir_all(dir.join("scheduler")).unwrap();
    let file = dir.join("scheduler/scheduler_config.json");
    std::fs::write(&file, [0xffu8, 0xfe, 0x00, 0x12]).unwrap();
    let e = err_text(SchedulerConfig::load(&file));
    assert!(e.contains(&file.display().to_string()), "{e}");
    std::fs::write(&file, missing).unwrap();
    assert!(err_text(SchedulerConfig::load(&file)).contains("no \"flow_shift\" key"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shift_policy() {
    assert_eq!(
        ShiftPolicy::parse("config").unwrap(),
        ShiftPolicy::FromConfig
    );
    assert_eq!(ShiftPolicy::parse("Auto").unwrap(), ShiftPolicy::Auto);
    assert_eq!(
        " 7.5 ".parse::<ShiftPolicy>().unwrap(),
        ShiftPolicy::Value(7.5)
    );
    for bad in ["-1", "0", "nan", "inf", "three", ""] {
        assert!(ShiftPolicy::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(ShiftPolicy::Value(7.5).to_string(), "7.5");

    let cfg = SchedulerConfig::from_model_dir(&fixture_dir().join("model_unipc")).unwrap();
    assert_eq!(
        ShiftPolicy::FromConfig.resolve(&cfg, 720, 1280).unwrap(),
        3.0
    );
    assert_eq!(ShiftPolicy::Auto.resolve(&cfg, 720, 1280).unwrap(), 5.0);
    assert_eq!(ShiftPolicy::Auto.resolve(&cfg, 480, 832).unwrap(), 3.0);
    assert_eq!(
        ShiftPolicy::Value(2.0).resolve(&cfg, 480, 832).unwrap(),
        2.0
    );
    assert!(ShiftPolicy::Value(-2.0).resolve(&cfg, 480, 832).is_err());
}

#[test]
fn auto_shift_by_area() {
    // 480P class: the 480×832 family and the I2V max_area recipe's other aspect ratios.
    for (h, w) in [(480, 832), (832, 480), (624, 624), (544, 960), (480, 480)] {
        assert_eq!(auto_shift(h, w).unwrap(), 3.0, "{h}x{w}");
    }
    for (h, w) in [
        (720, 1280),
        (1280, 720),
        (960, 960),
        (704, 1280),
        (1088, 832),
    ] {
        assert_eq!(auto_shift(h, w).unwrap(), 5.0, "{h}x{w}");
    }
    assert!(auto_shift(0, 832).is_err());
}
