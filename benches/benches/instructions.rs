//! Instructions per frame of the meter's burst path, counted exactly: a forked child meters the frames in bursts
//! while this process single-steps it (`ptrace`), so the count does not depend on what else runs on the machine,
//! unlike the cycle figures of the other benchmarks. It is the A/B signal a shared machine does not blur: a change
//! to the hot path shows here to the instruction, where cycles move by a few percent from run to run. The baseline,
//! counted in the same run on the same frames: the full parser alone (`wire::parse`, no attribution, no table).
//! The functions that ran most of the meter's instructions are listed by name when `nm` (binutils) is at hand.
//!
//! Each shape is metered once whole first (every flow in the table, so the counted bursts are updates), then
//! `INSTRUCTIONS_FRAMES` (default 256) of its frames are counted. The IPv4 frames are also counted as the first
//! of a window after a seal, where each flow is inserted again into a recycled table: what a seal costs the
//! worker afterwards. Single-stepping runs at about 10^5
//! instructions a second. x86-64 Linux; needs `ptrace` of a child, which the default Yama scope allows.
//!
//! `cargo bench -p flowlog-benches --bench instructions`

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[allow(dead_code)]
#[path = "../../vswitch-plugin/tests/quiet/trace.rs"]
mod trace;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[path = "../../vswitch-plugin/tests/quiet/mix.rs"]
mod mix;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() -> anyhow::Result<()> {
    counting::main()
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn main() {
    println!("instruction counts need x86-64 Linux (ptrace single-stepping)");
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod counting {
    use std::collections::BTreeMap;
    use std::process::Command;
    use std::sync::Arc;

    use anyhow::Context;
    use flowlog_benches::{
        SYNTHETIC_ENIS, ipv4_tcp_template, print_machine, set_flow, synthetic_eni_table,
        synthetic_ethernet, vxlan_header,
    };
    use flowlog_dataplane::flow::{
        Action, Burst, EniTable, MAX_BURST, Meter, MeterConfig, SealedWindow,
    };
    use flowlog_dataplane::wire::parse;

    use super::mix::{Frame, generated_mix};
    use super::trace::{Stretch, Tracer};

    const FLOWS: u32 = 10_000;

    pub fn main() -> anyhow::Result<()> {
        let counted: usize = std::env::var("INSTRUCTIONS_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
            .max(1);
        print_machine();
        println!(
            "instructions per frame of Meter::account_burst on prebuilt bursts of {MAX_BURST}, {counted} frames per \
             shape, each shape's flows already in the table; baseline: wire::parse alone on the same frames"
        );
        let enis = synthetic_eni_table()?;
        let v4: Vec<Frame> = (0..FLOWS)
            .map(|id| {
                let mut f = ipv4_tcp_template(id);
                set_flow(&mut f, id);
                (f.to_vec(), 64)
            })
            .collect();
        let overlay = v4
            .iter()
            .map(|(f, _)| {
                let mut outer = vxlan_header(f.len())?.to_vec();
                outer.extend_from_slice(f);
                let len = outer.len();
                Ok((outer, len))
            })
            .collect::<anyhow::Result<Vec<Frame>>>()?;
        let v6: Vec<Frame> = (0..FLOWS).map(|id| (ipv6_tcp(id), 86)).collect();
        let (mix, mix_enis) = generated_mix()?;
        let shapes = [
            (
                "64-byte IPv4/TCP frames, 10,000 flows",
                &v4,
                &enis,
                Window::Updates,
            ),
            (
                "the same, the window's first after a seal (every flow inserted again into a recycled table)",
                &v4,
                &enis,
                Window::AfterSeal,
            ),
            (
                "the same inside VXLAN over IPv4 (114 bytes)",
                &overlay,
                &enis,
                Window::Updates,
            ),
            (
                "86-byte IPv6/TCP frames, 10,000 flows",
                &v6,
                &enis,
                Window::Updates,
            ),
            (
                "the generated mix (seed 11, 20,000 frames)",
                &mix,
                &mix_enis,
                Window::Updates,
            ),
        ];
        for (name, frames, enis, window) in shapes {
            let traced = spread(frames, counted);
            let counts = count(frames, &traced, enis, window)?;
            println!(
                "  {name}: {:.1} instructions per frame (wire::parse alone: {:.1})",
                counts.meter as f64 / traced.len() as f64,
                counts.parse as f64 / traced.len() as f64
            );
            for (function, instructions) in counts.top {
                println!(
                    "      {:>7.1}  {function}",
                    instructions as f64 / traced.len() as f64
                );
            }
        }
        Ok(())
    }

    /// Where in a window the counted frames fall.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Window {
        /// Well into it: every flow is in the table, each frame an update.
        Updates,
        /// First after a seal: the table is a recycled one (cleared by the exporter's hand-back after it read
        /// a window out), so each flow is inserted again. Its cost against `Updates` is what a seal leaves
        /// behind for the worker to catch up with.
        AfterSeal,
    }

    /// `n` frames spread over all of `frames` (every k-th), in order.
    fn spread(frames: &[Frame], n: usize) -> Vec<Frame> {
        let step = (frames.len() / n).max(1);
        frames.iter().step_by(step).take(n).cloned().collect()
    }

    /// What [`count`] counted.
    struct Counts {
        /// Instructions of the meter's bursts.
        meter: u64,
        /// Instructions of `wire::parse` alone on the same frames.
        parse: u64,
        /// The meter's top functions by instructions, where they can be named.
        top: Vec<(String, u64)>,
    }

    /// Counts the meter on `traced` at `window` (after `warm` went through it whole), and `wire::parse` alone on
    /// the same frames.
    fn count(
        warm: &[Frame],
        traced: &[Frame],
        enis: &Arc<EniTable>,
        window: Window,
    ) -> anyhow::Result<Counts> {
        let mut meter = Meter::new(MeterConfig::new(60, 1 << 16), enis.clone())?;
        let mut sealed: Vec<SealedWindow> = Vec::new();
        // The bursts are built before counting: only the meter's instructions are counted.
        let (warm, traced_bursts) = (bursts(warm), bursts(traced));
        let mut now = 0;
        match window {
            Window::Updates => {
                meter_all(&mut meter, &warm, now, &mut sealed);
                meter_all(&mut meter, &traced_bursts, now, &mut sealed);
            }
            Window::AfterSeal => {
                // Three full windows, each sealed and read out, its table handed back: every table the meter
                // holds then has been used and recycled, as in a running worker.
                for _ in 0..3 {
                    meter_all(&mut meter, &warm, now, &mut sealed);
                    now += 60;
                    meter.advance(now, &mut sealed);
                    for mut window in sealed.drain(..) {
                        anyhow::ensure!(window.flows().len() == FLOWS as usize, "a whole window");
                        let table = window.take_table().context("a swapped table")?;
                        anyhow::ensure!(meter.recycle_table(table).is_ok(), "recycled");
                    }
                }
            }
        }
        // SAFETY: the child only runs the code below (no locks are taken between fork and exit that another
        // thread could hold: this process has one thread here) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        anyhow::ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: asks to be traced by the parent, then stops itself between the stretches to count.
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
            }
            meter_all(&mut meter, &traced_bursts, now, &mut sealed);
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGSTOP) };
            let mut parsed = 0usize;
            for (frame, wire_len) in traced {
                parsed += usize::from(parse(frame, *wire_len).is_ok());
            }
            std::hint::black_box(parsed);
            // SAFETY: as above; _exit skips the parent's atexit handlers and buffers.
            unsafe {
                libc::raise(libc::SIGSTOP);
                libc::_exit(0);
            }
        }
        let mut tracer = Tracer::child(pid).context("tracing the child")?;
        let metered = tracer.step_to_stop()?;
        let top = top_functions(&tracer, &metered);
        let parsed = tracer.step_to_stop()?;
        tracer.cont()?;
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Ok(Counts {
            meter: metered.instructions,
            parse: parsed.instructions,
            top,
        })
    }

    /// `frames` in bursts of MAX_BURST.
    fn bursts(frames: &[Frame]) -> Vec<Burst<'_>> {
        frames
            .chunks(MAX_BURST)
            .map(|chunk| {
                let mut burst = Burst::new();
                for (frame, wire_len) in chunk {
                    // At most MAX_BURST frames per chunk.
                    let _ = burst.push(frame, *wire_len, Action::Accept);
                }
                burst
            })
            .collect()
    }

    /// Meters `bursts`, all at `now`.
    fn meter_all(
        meter: &mut Meter,
        bursts: &[Burst<'_>],
        now: u64,
        sealed: &mut Vec<SealedWindow>,
    ) {
        for burst in bursts {
            meter.account_burst(now, burst, sealed);
        }
    }

    /// The functions that ran the most instructions of `stretch` (at most 6), by name from `nm` (the file's name
    /// where it has none); empty when `nm` or `readelf` is missing.
    fn top_functions(tracer: &Tracer, stretch: &Stretch) -> Vec<(String, u64)> {
        let addresses: Vec<u64> = stretch.runs.keys().copied().collect();
        let mut files: BTreeMap<String, Option<Symbols>> = BTreeMap::new();
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (address, (file, offset)) in tracer.places(&addresses) {
            let runs = stretch.runs.get(&address).copied().unwrap_or(0);
            let symbols = files.entry(file.clone()).or_insert_with(|| symbols(&file));
            let name = match symbols {
                Some(symbols) => symbols.name(offset),
                None => file.rsplit('/').next().unwrap_or(&file).to_owned(),
            };
            *by.entry(name).or_default() += runs;
        }
        if files.values().all(Option::is_none) {
            return Vec::new();
        }
        let mut top: Vec<(String, u64)> = by.into_iter().collect();
        top.sort_by_key(|(_, instructions)| std::cmp::Reverse(*instructions));
        top.truncate(6);
        top
    }

    /// A file's function symbols, addressed by file offset.
    struct Symbols {
        /// (file offset, demangled name), sorted.
        by_offset: Vec<(u64, String)>,
    }

    impl Symbols {
        fn name(&self, offset: u64) -> String {
            let i = self.by_offset.partition_point(|(o, _)| *o <= offset);
            match i.checked_sub(1).and_then(|i| self.by_offset.get(i)) {
                Some((_, name)) => name.chars().take(100).collect(),
                None => "?".to_owned(),
            }
        }
    }

    /// Reads the function symbols of `exe` with `nm` (its dynamic ones where it has no others, as a system
    /// library) and maps their addresses to file offsets with `readelf`'s loadable segments; `None` when either
    /// tool is missing or the file has no symbols.
    fn symbols(exe: &str) -> Option<Symbols> {
        let run = |program: &str, args: &[&str]| -> Option<String> {
            let out = Command::new(program).args(args).arg(exe).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        // (file offset, virtual address, file size) of each LOAD segment.
        let segments: Vec<(u64, u64, u64)> = run("readelf", &["-lW"])?
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                (f.next()? == "LOAD").then_some(())?;
                let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
                let (offset, vaddr) = (hex(f.next()?)?, hex(f.next()?)?);
                let size = hex(f.nth(1)?)?;
                Some((offset, vaddr, size))
            })
            .collect();
        let names = run("nm", &["-C", "--defined-only"])
            .filter(|names| !names.trim().is_empty())
            .or_else(|| run("nm", &["-D", "-C", "--defined-only"]))?;
        let mut by_offset: Vec<(u64, String)> = names
            .lines()
            .filter_map(|line| {
                let (address, rest) = line.split_once(' ')?;
                let (kind, name) = rest.split_once(' ')?;
                matches!(kind, "t" | "T" | "w" | "W").then_some(())?;
                let vaddr = u64::from_str_radix(address, 16).ok()?;
                let &(offset, start, _) = segments
                    .iter()
                    .find(|(_, start, size)| (*start..start + size).contains(&vaddr))?;
                Some((vaddr - start + offset, name.to_owned()))
            })
            .collect();
        by_offset.sort();
        (!by_offset.is_empty()).then_some(Symbols { by_offset })
    }

    /// An 86-byte IPv6/TCP frame of flow `id` from synthetic ENI `id % SYNTHETIC_ENIS` to the internet.
    fn ipv6_tcp(id: u32) -> Vec<u8> {
        let mut f = vec![0u8; 86];
        synthetic_ethernet(&mut f, id, 0x86dd);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&32u16.to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[22..24].copy_from_slice(&[0x20, 0x01]);
        f[37] = (id % SYNTHETIC_ENIS) as u8;
        f[38..40].copy_from_slice(&[0x24, 0x04]);
        f[50..54].copy_from_slice(&id.to_be_bytes());
        f[54..56].copy_from_slice(&(40_000 + (id % 20_000) as u16).to_be_bytes());
        f[56..58].copy_from_slice(&443u16.to_be_bytes());
        f[66] = 0x80;
        f[67] = 0x10;
        f
    }
}
