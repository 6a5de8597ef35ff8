//! Offload layout, plans and the planner, on the CPU (no GPU needed).

use wanrt::runtime::offload::{
    fmt_bytes, minimum_budget, parse_size, plan_for, Area, Budget, Grouping, Mode, ModelUnits, Plan, Prefs, TensorSpec, UnitSpec, ALIGN,
};
use wanrt::DType;

const MIB: u64 = 1 << 20;

fn lin(name: &str, block: Option<usize>, out: usize, inp: usize, bias: bool) -> UnitSpec {
    let mut t = vec![TensorSpec::new(format!("{name}.weight"), &[out, inp], DType::BF16)];
    if bias {
        t.push(TensorSpec::new(format!("{name}.bias"), &[out], DType::BF16));
    }
    UnitSpec::new(name, block, t)
}

/// A Wan-like model: 2 embedding leaves, `blocks` blocks of (norm params, qkv, out, ffn up, ffn
/// down), a head with a parameter table.
fn wan_like(blocks: usize, d: usize) -> ModelUnits {
    let mut u = vec![lin("patch_embedding", None, d, 64, true), lin("time_embedding", None, d, 256, true)];
    for b in 0..blocks {
        let p = format!("blocks.{b}");
        u.push(UnitSpec::new(format!("{p}.norm"), Some(b), vec![TensorSpec::new(format!("{p}.norm.weight"), &[d], DType::F32)]));
        u.push(lin(&format!("{p}.qkv"), Some(b), 3 * d, d, true));
        u.push(lin(&format!("{p}.o"), Some(b), d, d, true));
        u.push(lin(&format!("{p}.ffn.0"), Some(b), 4 * d, d, true));
        u.push(lin(&format!("{p}.ffn.2"), Some(b), d, 4 * d, true));
    }
    u.push(UnitSpec::new("head.table", None, vec![TensorSpec::new("head.table", &[2, d], DType::F32)]));
    u.push(lin("head.proj", None, 64, d, true));
    ModelUnits::new(u).unwrap()
}

#[test]
fn packing_aligns_every_tensor() {
    let t = |n: &str, s: &[usize], d| TensorSpec::new(n, s, d);
    let u = ModelUnits::new(vec![
        UnitSpec::new("a", None, vec![t("a.x", &[3], DType::BF16), t("a.y", &[5, 7], DType::F32), t("a.z", &[1], DType::F16)]),
        UnitSpec::new("b", Some(0), vec![t("b.w", &[256], DType::F32)]),
        UnitSpec::new("c", Some(0), vec![t("c.empty", &[0, 4], DType::BF16), t("c.s", &[], DType::F32)]),
    ])
    .unwrap();
    assert_eq!(u.layout(0).offsets, vec![0, 256, 512]);
    assert_eq!(u.unit_bytes(0), 768);
    assert_eq!(u.layout(1).offsets, vec![0]);
    assert_eq!(u.unit_bytes(1), 1024);
    assert_eq!(u.layout(2).offsets, vec![0, 0]);
    assert_eq!(u.unit_bytes(2), 256);
    assert_eq!(u.total_bytes(), 768 + 1024 + 256);
    assert_eq!(u.range_bytes(1..3), 1280);
    assert_eq!(u.largest_unit(), (1, 1024));
    assert_eq!(u.index_of("c"), Some(2));
    assert_eq!(u.index_of("nope"), None);
    for i in 0..u.len() {
        assert_eq!(u.unit_bytes(i) % ALIGN, 0);
        assert!(u.layout(i).offsets.iter().all(|o| o % ALIGN == 0));
    }
}

#[test]
fn bad_unit_lists_are_refused() {
    let w = |n: &str| TensorSpec::new(n, &[4, 4], DType::BF16);
    let err = |units: Vec<UnitSpec>| ModelUnits::new(units).unwrap_err().to_string();
    assert!(err(vec![]).contains("at least one"));
    assert!(err(vec![UnitSpec::new("a", None, vec![])]).contains("no tensors"));
    let e = err(vec![UnitSpec::new("a", None, vec![w("x")]), UnitSpec::new("a", None, vec![w("y")])]);
    assert!(e.contains("both named a"), "{e}");
    let e = err(vec![UnitSpec::new("a", None, vec![w("x")]), UnitSpec::new("b", None, vec![w("x")])]);
    assert!(e.contains("tensor x") && e.contains("unit a") && e.contains("unit b"), "{e}");
    let e = err(vec![
        UnitSpec::new("a", Some(0), vec![w("x")]),
        UnitSpec::new("b", Some(1), vec![w("y")]),
        UnitSpec::new("c", Some(0), vec![w("z")]),
    ]);
    assert!(e.contains("block 0") && e.contains("not consecutive"), "{e}");
    let huge = TensorSpec::new("h", &[usize::MAX, 4], DType::F32);
    assert!(err(vec![UnitSpec::new("a", None, vec![huge])]).contains("overflows"));
}

#[test]
fn groups_follow_blocks_and_leaves() {
    let u = wan_like(7, 64);
    let n = u.len();
    assert_eq!(n, 2 + 7 * 5 + 2);
    let leaf = Plan::new(&u, Mode::Leaf { streamed: true }, 2, 0).unwrap();
    assert_eq!(leaf.groups().len(), n);
    assert!(leaf.groups().iter().all(|g| !g.resident && g.units.len() == 1));
    for (nb, want) in [(1, 7), (2, 4), (3, 3), (7, 1), (100, 1)] {
        let p = Plan::new(&u, Mode::Block { n: nb, streamed: false }, 2, 0).unwrap();
        // Units outside blocks stand alone: 2 embeddings + 2 head units.
        assert_eq!(p.groups().len(), want + 4, "n = {nb}");
        assert_eq!(p.groups()[2].units, 2..2 + 5 * nb.min(7));
        let largest = p.groups().iter().map(|g| g.bytes).max().unwrap();
        assert_eq!(p.slot_bytes(), largest);
        assert_eq!(p.resident_bytes(), 0);
        assert_eq!(p.streamed_bytes(), u.total_bytes());
        assert_eq!(p.slots(), 2);
        assert!(!p.prefetch());
        // Groups cover every unit once, in order.
        let mut next = 0;
        for (gi, g) in p.groups().iter().enumerate() {
            assert_eq!(g.units.start, next);
            assert_eq!(g.bytes, u.range_bytes(g.units.clone()));
            for i in g.units.clone() {
                assert_eq!(p.group_of(i), gi);
            }
            next = g.units.end;
        }
        assert_eq!(next, n);
    }
    let res = Plan::new(&u, Mode::Resident, 5, 100).unwrap();
    assert!(res.groups().iter().all(|g| g.resident));
    assert_eq!((res.slots(), res.slot_bytes(), res.streamed_bytes()), (0, 0, 0));
    assert_eq!(res.expected_vram(), u.total_bytes() + 100);
    assert!(res.streamed_groups().is_empty());
}

#[test]
fn hybrid_keeps_the_ends_resident() {
    let u = wan_like(4, 64);
    let n = u.len();
    let p = Plan::new(&u, Mode::Hybrid { prefix: 4, suffix: 2, group: Grouping::Blocks(1), streamed: true }, 3, 7).unwrap();
    assert!(p.prefetch());
    let resident: Vec<usize> = (0..n).filter(|&i| p.groups()[p.group_of(i)].resident).collect();
    assert_eq!(resident, vec![0, 1, 2, 3, n - 2, n - 1]);
    assert_eq!(p.resident_bytes(), u.range_bytes(0..4) + u.range_bytes(n - 2..n));
    // The streamed part starts mid-block: the rest of block 0 is a group of its own.
    let first = &p.groups()[p.streamed_groups()[0]];
    assert_eq!(first.units, 4..7);
    assert_eq!(p.slot_bytes(), u.range_bytes(7..12));
    assert_eq!(p.expected_vram(), p.resident_bytes() + 3 * p.slot_bytes() + 7);
    assert_eq!(p.host_bytes_pinned(), u.total_bytes() - p.resident_bytes());
    assert_eq!(p.host_bytes_staging(3), 3 * p.slot_bytes());
}

#[test]
fn impossible_plans_are_errors() {
    let u = wan_like(2, 64);
    let n = u.len();
    for mode in [Mode::Block { n: 0, streamed: true }, Mode::Hybrid { prefix: 1, suffix: 0, group: Grouping::Blocks(0), streamed: true }] {
        assert!(Plan::new(&u, mode, 2, 0).unwrap_err().to_string().contains("at least one block"));
    }
    let e = Plan::new(&u, Mode::Leaf { streamed: true }, 1, 0).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    assert!(Plan::new(&u, Mode::Leaf { streamed: false }, 1, 0).is_err(), "synchronous plans need 2 slots too");
    let e = Plan::new(&u, Mode::Hybrid { prefix: n - 1, suffix: 1, group: Grouping::Leaf, streamed: true }, 2, 0).unwrap_err();
    assert!(e.to_string().contains("at least one must be streamed"), "{e}");
    assert!(Plan::new(&u, Mode::Hybrid { prefix: usize::MAX, suffix: 1, group: Grouping::Leaf, streamed: true }, 2, 0).is_err());
}

#[test]
fn planner_prefers_resident_then_hybrid_then_streaming() {
    let u = wan_like(7, 256);
    let act = 3 * MIB;
    let total = u.total_bytes();
    let auto = Prefs { area: Area::Slots, ..Prefs::default() };
    // Exactly enough for everything: resident.
    let p = plan_for(&u, total + act, act, auto).unwrap();
    assert_eq!(p.mode(), Mode::Resident);
    assert_eq!(p.budget(), Some(total + act));
    // One byte less: a hybrid that still fits and keeps the most it can.
    let budget = total + act - 1;
    let p = plan_for(&u, budget, act, auto).unwrap();
    assert!(matches!(p.mode(), Mode::Hybrid { streamed: true, .. }), "{}", p.mode());
    assert!(p.expected_vram() <= budget);
    assert_eq!(p.slots(), 2);
    assert!(p.resident_bytes() > total / 2, "{p}");
    assert_eq!(p.resident_bytes(), best_hybrid_brute_force(&u, budget, act, 2, Area::Slots), "{p}");
    // Half the weights: still hybrid, still the best one.
    let budget = total / 2 + act;
    let p = plan_for(&u, budget, act, auto).unwrap();
    assert!(matches!(p.mode(), Mode::Hybrid { .. }));
    assert_eq!(p.resident_bytes(), best_hybrid_brute_force(&u, budget, act, 2, Area::Slots));
    // The default area keeps a byte ring for the leaf-streamed part, at the cost of a third slot's
    // worth of resident bytes.
    let p = plan_for(&u, budget, act, Prefs::default()).unwrap();
    assert_eq!(p.resident_bytes(), best_hybrid_brute_force(&u, budget, act, 2, Area::Auto), "{p}");
    assert!(p.ring_bytes().is_some() && p.expected_vram() <= budget, "{p}");
    // The minimum: leaf streaming with two slots of the largest unit.
    let min = minimum_budget(&u, act);
    assert_eq!(min, act + 2 * u.largest_unit().1);
    let p = plan_for(&u, min, act, auto).unwrap();
    assert_eq!(p.mode(), Mode::Leaf { streamed: true });
    assert_eq!(p.expected_vram(), min);
}

/// The most resident bytes any hybrid can keep, with slots sized for the whole model's largest
/// group under that grouping (the planner's guarantee), by trying every prefix and suffix. Under
/// `Area::Auto` a leaf-streamed part reserves a ring of 3 of its largest groups where the budget
/// allows that, else K slots.
fn best_hybrid_brute_force(u: &ModelUnits, budget: u64, act: u64, k: u64, area: Area) -> u64 {
    let n = u.len();
    let mut best = 0;
    for group in [Grouping::Blocks(1), Grouping::Leaf] {
        let mode = if group == Grouping::Leaf { Mode::Leaf { streamed: true } } else { Mode::Block { n: 1, streamed: true } };
        let slot = Plan::new(u, mode, 2, 0).unwrap().slot_bytes();
        let ring = area == Area::Ring || (area == Area::Auto && group == Grouping::Leaf);
        let k = if ring && (area == Area::Ring || act + k.max(3) * slot <= budget) { k.max(3) } else { k };
        for p in 0..n {
            for s in 0..n - p {
                let bytes = u.range_bytes(0..p) + u.range_bytes(n - s..n);
                if bytes + k * slot + act <= budget {
                    best = best.max(bytes);
                }
            }
        }
    }
    best
}

/// The most resident bytes of any prefix/suffix split whose own plan (its streamed part's slots or
/// ring, as `area` gives it) fits the budget: the true optimum the planner approaches.
fn best_fitting_split(u: &ModelUnits, budget: u64, act: u64, area: Area) -> u64 {
    let n = u.len();
    let mut best = 0;
    for group in [Grouping::Blocks(1), Grouping::Leaf] {
        let ring = area == Area::Ring || (area == Area::Auto && group == Grouping::Leaf);
        for p in 0..n {
            for s in 0..n - p {
                let bytes = u.range_bytes(0..p) + u.range_bytes(n - s..n);
                if bytes <= best || bytes == 0 {
                    continue;
                }
                let plan = Plan::new(u, Mode::Hybrid { prefix: p, suffix: s, group, streamed: true }, 2, act).unwrap();
                let fits = |q: &Plan| q.expected_vram() <= budget;
                let ok = if ring {
                    let r = plan.clone().with_ring().unwrap();
                    fits(&r) || (area == Area::Auto && fits(&plan))
                } else {
                    fits(&plan)
                };
                if ok {
                    best = bytes;
                }
            }
        }
    }
    best
}

#[test]
fn planner_hybrid_is_optimal_on_many_budgets() {
    let u = wan_like(5, 128);
    let act = MIB;
    let min = minimum_budget(&u, act);
    let total = u.total_bytes() + act;
    for area in [Area::Slots, Area::Auto] {
        for step in 0..=40u64 {
            let budget = min + (total - min) * step / 41;
            let p = plan_for(&u, budget, act, Prefs { area, ..Prefs::default() }).unwrap();
            assert!(p.expected_vram() <= budget, "budget {budget}: {p}");
            // At least what the reservation guarantees, at most the best split whose own plan fits.
            let want = best_hybrid_brute_force(&u, budget, act, 2, area);
            let best = best_fitting_split(&u, budget, act, area);
            assert!(want <= p.resident_bytes() && p.resident_bytes() <= best, "{area:?} budget {budget}: {want} / {best}: {p}");
            if best == 0 {
                assert!(matches!(p.mode(), Mode::Block { .. } | Mode::Leaf { .. }), "{}", p.mode());
            }
        }
    }
}

#[test]
fn planner_streams_blocks_when_nothing_else_fits() {
    // Uniform units, blocks of two: no hybrid fits besides two block slots, block streaming does.
    let mut v = Vec::new();
    for b in 0..6 {
        for j in 0..2 {
            v.push(lin(&format!("b{b}.l{j}"), Some(b), 512, 512, false));
        }
    }
    let u = ModelUnits::new(v).unwrap();
    let unit = u.unit_bytes(0);
    let act = MIB;
    let p = plan_for(&u, act + 4 * unit, act, Prefs { area: Area::Slots, ..Prefs::default() }).unwrap();
    // Leaf hybrid: 2 leaf slots leave 2 units resident, more than block slots allow.
    assert!(matches!(p.mode(), Mode::Hybrid { group: Grouping::Leaf, .. }), "{}", p.mode());
    assert_eq!(p.resident_bytes(), 2 * unit);
    // With three slots forced, only 4 units of room: block streaming needs 6, leaf + hybrid needs 3 + 1.
    let p = plan_for(&u, act + 4 * unit, act, Prefs { mode: None, slots: Some(3), area: Area::Slots }).unwrap();
    assert!(matches!(p.mode(), Mode::Hybrid { group: Grouping::Leaf, .. }), "{}", p.mode());
    assert_eq!(p.slots(), 3);
    // One unit per block, room for two slots and nothing more: block streaming, K = 2.
    let blocks_only: Vec<UnitSpec> = (0..6).map(|b| lin(&format!("blk{b}"), Some(b), 512, 512, false)).collect();
    let one_per_block = ModelUnits::new(blocks_only).unwrap();
    let p = plan_for(&one_per_block, act + 2 * unit, act, Prefs::default()).unwrap();
    assert_eq!(p.mode(), Mode::Block { n: 1, streamed: true });
    assert_eq!(p.slots(), 2);
    // More slots when asked, if they fit.
    let p = plan_for(&one_per_block, act + 3 * unit, act, Prefs { mode: None, slots: Some(3), area: Area::Slots }).unwrap();
    assert_eq!((p.mode(), p.slots()), (Mode::Block { n: 1, streamed: true }, 3));
    let e = plan_for(&one_per_block, act + 3 * unit - 1, act, Prefs { mode: None, slots: Some(3), area: Area::Slots }).unwrap_err();
    assert!(e.to_string().contains("3 slots"), "{e}");
}

#[test]
fn budget_below_minimum_names_it() {
    let u = wan_like(3, 256);
    let act = 5 * MIB;
    let min = minimum_budget(&u, act);
    let e = plan_for(&u, min - 1, act, Prefs::default()).unwrap_err().to_string();
    assert!(e.contains(&format!("{min} bytes")), "{e}");
    assert!(e.contains(&format!("{} bytes", min - 1)), "{e}");
    let (largest, _) = u.largest_unit();
    assert!(e.contains(&u.unit(largest).name), "{e}");
    let e = plan_for(&u, 0, act, Prefs::default()).unwrap_err().to_string();
    assert!(e.contains("below the minimum"), "{e}");
    // A forced mode that does not fit says what it needs and what the model's minimum is.
    let forced = Prefs { mode: Some(Mode::Block { n: 2, streamed: true }), ..Prefs::default() };
    let need = Plan::new(&u, Mode::Block { n: 2, streamed: true }, 2, act).unwrap().expected_vram();
    let e = plan_for(&u, need - 1, act, forced).unwrap_err().to_string();
    assert!(e.contains(&format!("{need} bytes")) && e.contains(&format!("{min} bytes")), "{e}");
    let p = plan_for(&u, need, act, forced).unwrap();
    assert_eq!(p.mode(), Mode::Block { n: 2, streamed: true });
    // A one-unit model: resident needs less than two slots, and that is the minimum.
    let one = ModelUnits::new(vec![lin("only", None, 64, 64, false)]).unwrap();
    assert_eq!(minimum_budget(&one, act), act + one.total_bytes());
    assert_eq!(plan_for(&one, act + one.total_bytes(), act, Prefs::default()).unwrap().mode(), Mode::Resident);
    let e = plan_for(&one, act, act, Prefs::default()).unwrap_err().to_string();
    assert!(e.contains("resident"), "{e}");
}

#[test]
fn sizes_parse_and_print() {
    let b = |s: &str| parse_size(s).unwrap();
    assert_eq!(b("8GiB"), Budget::Bytes(8 << 30));
    assert_eq!(b("7.5G"), Budget::Bytes(7 * (1 << 30) + (1 << 29)));
    assert_eq!(b("512MiB"), Budget::Bytes(512 << 20));
    assert_eq!(b(" 512 mib "), Budget::Bytes(512 << 20));
    assert_eq!(b("8GB"), Budget::Bytes(8_000_000_000));
    assert_eq!(b("1k"), Budget::Bytes(1024));
    assert_eq!(b("123"), Budget::Bytes(123));
    assert_eq!(b("2TiB"), Budget::Bytes(2 << 40));
    assert_eq!(b("auto"), Budget::Auto);
    assert_eq!(b("AUTO"), Budget::Auto);
    for bad in ["", "GiB", "8 parsecs", "-1G", "1.2.3G", "nan", "1e3", "99999999999TiB"] {
        let e = parse_size(bad).unwrap_err().to_string();
        assert!(e.contains("size") && e.contains("8GiB"), "{bad}: {e}");
    }
    assert_eq!(Budget::Bytes(5).resolve(0).unwrap(), 5);
    let free = 80u64 << 30;
    assert_eq!(Budget::Auto.resolve(free).unwrap(), free - free / 20);
    assert_eq!(Budget::Auto.resolve(4 << 30).unwrap(), (4 << 30) - (512 << 20));
    assert!(Budget::Auto.resolve(100 << 20).unwrap_err().to_string().contains("margin"));
    assert_eq!(fmt_bytes(300), "300 B");
    assert_eq!(fmt_bytes(1536), "1.50 KiB");
    assert_eq!(fmt_bytes(8 << 30), "8.00 GiB");
}

#[test]
fn plan_prints_without_a_gpu() {
    let u = wan_like(3, 128);
    let act = MIB;
    let budget = act + u.total_bytes() * 2 / 3;
    let ring = plan_for(&u, budget, act, Prefs::default()).unwrap().to_string();
    assert!(ring.contains("offload plan: hybrid") && ring.contains("leaf units") && ring.contains("byte ring"), "{ring}");
    let p = plan_for(&u, budget, act, Prefs { area: Area::Slots, ..Prefs::default() }).unwrap();
    let s = p.to_string();
    for want in ["offload plan: hybrid", "resident weights", "slots", "2 x", "expected VRAM", "budget", "host RAM", "pinned arena", "low-RAM"] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(s.contains(&fmt_bytes(p.expected_vram())), "{s}");
    assert!(!s.contains("group    0"), "the plain form is a summary");
    let long = format!("{p:#}");
    assert_eq!(long.matches("\n    group").count(), p.groups().len(), "{long}");
    assert!(long.contains("blocks.0.norm .. blocks.0.ffn.2") || long.contains("blocks.0.norm"), "{long}");
    let r = plan_for(&u, u.total_bytes() + act, act, Prefs::default()).unwrap().to_string();
    assert!(r.contains("resident") && !r.contains("slots ") && r.contains("none kept"), "{r}");
}

/// The byte ring: at least the K slots' size and at least the pair rule (a + 2b over consecutive
/// streamed groups, wrapping); counted in the expected VRAM; refused for synchronous plans; the
/// planner honours it and prints it.
#[test]
fn byte_ring_sizes_and_planning() {
    use wanrt::runtime::offload::ring_minimum;
    let u = wan_like(4, 256);
    let leaf = Plan::new(&u, Mode::Leaf { streamed: true }, 2, 7).unwrap();
    let sizes: Vec<u64> = leaf.groups().iter().map(|g| g.bytes).collect();
    let ring = leaf.clone().with_ring().unwrap();
    let want = (2 * leaf.slot_bytes()).max(ring_minimum(&sizes));
    assert_eq!(ring.ring_bytes(), Some(want));
    assert_eq!(ring.expected_vram(), want + 7);
    assert_eq!(ring.stream_area_bytes(), want);
    assert!(format!("{ring}").contains("byte ring"), "{ring}");
    // The pair rule by hand: ffn.0 (4d x d) followed by ffn.2 (d x 4d), both the largest.
    let big = u.unit_bytes(u.index_of("blocks.0.ffn.0").unwrap());
    assert_eq!(ring_minimum(&[big, big]), 3 * big);
    assert_eq!(ring_minimum(&[10, 1, 30]), 1 + 2 * 30);
    assert_eq!(ring_minimum(&[]), 0);
    // Synchronous plans upload right before use: no ring.
    let sync = Plan::new(&u, Mode::Leaf { streamed: false }, 2, 0).unwrap();
    assert!(sync.with_ring().unwrap_err().to_string().contains("byte ring"));
    // Resident: nothing to stream, the plan is unchanged.
    let res = Plan::new(&u, Mode::Resident, 0, 0).unwrap().with_ring().unwrap();
    assert_eq!(res.ring_bytes(), None);
    // The planner: a forced mode gets its ring; the budget is checked against the ring.
    let prefs = Prefs { mode: Some(Mode::Leaf { streamed: true }), slots: None, area: Area::Ring };
    let p = plan_for(&u, want + 7, 7, prefs).unwrap();
    assert_eq!(p.ring_bytes(), Some(want));
    assert!(plan_for(&u, want + 6, 7, prefs).is_err());
    // Auto with a ring: whatever fits, and if it streams, through a ring.
    let auto = Prefs { mode: None, slots: None, area: Area::Ring };
    let p = plan_for(&u, u.total_bytes() / 2, 0, auto).unwrap();
    assert!(p.ring_bytes().is_some() && p.expected_vram() <= u.total_bytes() / 2, "{p}");
}

/// `Area::Auto` (the default): leaf and block streaming take the ring when the budget holds it and
/// fall back to K slots when only those fit; synchronous plans and block hybrids keep the slots;
/// `Slots` never takes a ring.
#[test]
fn auto_area_rings_streaming_when_it_fits() {
    let u = wan_like(4, 256);
    let act = 7;
    let leaf = Mode::Leaf { streamed: true };
    let slots = Plan::new(&u, leaf, 2, act).unwrap();
    let ring = slots.clone().with_ring().unwrap();
    assert!(ring.expected_vram() > slots.expected_vram(), "the pair rule must need more than 2 slots here");
    let auto = Prefs { mode: Some(leaf), ..Prefs::default() };
    assert_eq!(auto.area, Area::Auto);
    let p = plan_for(&u, ring.expected_vram(), act, auto).unwrap();
    assert_eq!(p.ring_bytes(), ring.ring_bytes());
    let p = plan_for(&u, ring.expected_vram() - 1, act, auto).unwrap();
    assert_eq!((p.ring_bytes(), p.expected_vram()), (None, slots.expected_vram()));
    let fixed = Prefs { mode: Some(leaf), slots: Some(2), area: Area::Slots };
    assert_eq!(plan_for(&u, ring.expected_vram(), act, fixed).unwrap().ring_bytes(), None);
    // Block streaming takes the ring too when it fits, the slots when only they fit.
    let block = Mode::Block { n: 1, streamed: true };
    let block_slots = Plan::new(&u, block, 2, act).unwrap();
    let block_ring = block_slots.clone().with_ring().unwrap();
    assert!(block_ring.expected_vram() > block_slots.expected_vram());
    let auto_block = Prefs { mode: Some(block), ..Prefs::default() };
    assert_eq!(plan_for(&u, block_ring.expected_vram(), act, auto_block).unwrap().ring_bytes(), block_ring.ring_bytes());
    assert_eq!(plan_for(&u, block_ring.expected_vram() - 1, act, auto_block).unwrap().ring_bytes(), None);
    for mode in [Mode::Block { n: 1, streamed: false }, Mode::Leaf { streamed: false }] {
        let p = plan_for(&u, u.total_bytes() + act, act, Prefs { mode: Some(mode), ..Prefs::default() }).unwrap();
        assert_eq!(p.ring_bytes(), None, "{mode}");
    }
    // The planner's own choices: the most resident bytes first (a resident byte saves its transfer),
    // then the ring for a leaf-grouped streamed part whenever it still fits the budget.
    let mut rings = 0;
    for budget in (slots.expected_vram()..u.total_bytes()).step_by(37 * 1024) {
        let p = plan_for(&u, budget, act, Prefs::default()).unwrap();
        if matches!(
            p.mode(),
            Mode::Leaf { streamed: true } | Mode::Block { streamed: true, .. } | Mode::Hybrid { group: Grouping::Leaf, streamed: true, .. }
        ) {
            let r = p.clone().with_ring().unwrap();
            assert_eq!(p.ring_bytes().is_some(), r.expected_vram() <= budget, "{p}");
            rings += p.ring_bytes().is_some() as usize;
        } else {
            assert_eq!(p.ring_bytes(), None, "{p}");
        }
    }
    assert!(rings > 0, "no budget gave a ring");
}

/// The planner's last error, reached only when forced slots or a forced ring do not fit a budget that
/// holds the 2-slot minimum: it names the budget, what those settings need (more than the budget),
/// and the minimum as the fallback, with each figure in its place.
#[test]
fn forced_area_that_does_not_fit_names_what_it_needs() {
    let u = wan_like(3, 128);
    let act = MIB;
    let min = minimum_budget(&u, act);
    for (prefs, needle) in [
        (Prefs { slots: Some(3), area: Area::Slots, ..Prefs::default() }, "3 slots of the largest unit"),
        (Prefs { area: Area::Ring, ..Prefs::default() }, "byte ring"),
    ] {
        let e = plan_for(&u, min, act, prefs).unwrap_err().to_string();
        let budget = format!("VRAM budget {} ({min} bytes) cannot hold", fmt_bytes(min));
        assert!(e.starts_with(&budget) && e.contains(needle), "{e}");
        let need: u64 = e.split("needs ").nth(1).and_then(|s| s.split(" bytes").next()).and_then(|s| s.rsplit('(').next()).unwrap().parse().unwrap();
        assert!(need > min, "what is missing must exceed the budget: {e}");
        assert!(e.contains(&format!("the smallest plan, 2 slots, needs {} ({min} bytes)", fmt_bytes(min))), "{e}");
    }
    // Slot counts whose area would overflow are refused up front.
    let e = plan_for(&u, u64::MAX / 2, act, Prefs { slots: Some(usize::MAX), ..Prefs::default() }).unwrap_err().to_string();
    assert!(e.contains("at most 64"), "{e}");
}
