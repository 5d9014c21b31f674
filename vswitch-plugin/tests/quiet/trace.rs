//! A `ptrace` tracer that single-steps one thread of a forked child and decodes every instruction it runs,
//! for locked ones: on x86-64 every lock acquisition, atomic read-modify-write and `Arc` count change carries a
//! `lock` prefix or is an `xchg` with memory (`hot_path_locks.rs`, `hot_path_poll_loop_locks.rs`).

use std::collections::HashMap;
use std::io;

/// What the traced thread ran in a stretch of steps.
#[derive(Debug, Default)]
pub struct Stretch {
    pub instructions: u64,
    /// Addresses of the locked instructions run (each time one ran).
    pub locked: Vec<u64>,
    /// How many times each address ran.
    pub runs: HashMap<u64, u64>,
}

/// A tracer of one thread (a forked child that asked to be traced, or a thread of one it seized).
pub struct Tracer {
    tid: libc::pid_t,
    /// Whether the instruction at an address is locked (code does not change while traced).
    decoded: HashMap<u64, bool>,
}

fn check(r: libc::c_long) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Tracer {
    /// The tracer of a forked child that called `PTRACE_TRACEME` and stopped itself: waits for that stop and
    /// makes the child die with the tracer.
    pub fn child(pid: libc::pid_t) -> io::Result<Tracer> {
        let tracer = Tracer {
            tid: pid,
            decoded: HashMap::new(),
        };
        tracer.wait_stop()?;
        // SAFETY: sets an option on our stopped tracee.
        check(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_EXITKILL) })?;
        Ok(tracer)
    }

    /// Seizes thread `tid` of a child process (its process dies with the tracer) and stops it.
    pub fn seize(tid: libc::pid_t) -> io::Result<Tracer> {
        // SAFETY: attaches to a thread of our own child.
        check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, libc::PTRACE_O_EXITKILL) })?;
        let tracer = Tracer {
            tid,
            decoded: HashMap::new(),
        };
        tracer.interrupt()?;
        Ok(tracer)
    }

    /// Stops the running (seized) thread.
    pub fn interrupt(&self) -> io::Result<()> {
        // SAFETY: stops our seized tracee.
        check(unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, self.tid, 0, 0) })?;
        self.wait_stop().map(drop)
    }

    /// Lets the stopped thread run on (delivering no signal).
    pub fn cont(&self) -> io::Result<()> {
        // SAFETY: resumes our stopped tracee.
        check(unsafe { libc::ptrace(libc::PTRACE_CONT, self.tid, 0, 0) })
    }

    /// Waits for the thread's next stop; returns its signal.
    pub fn wait_stop(&self) -> io::Result<i32> {
        let mut status = 0;
        // SAFETY: waits for our own tracee (__WALL: it may be a thread other than a process's first).
        if unsafe { libc::waitpid(self.tid, &mut status, libc::__WALL) } != self.tid {
            return Err(io::Error::last_os_error());
        }
        if libc::WIFSTOPPED(status) {
            Ok(libc::WSTOPSIG(status))
        } else {
            Err(io::Error::other(format!(
                "the traced thread ended (wait status {status:#x})"
            )))
        }
    }

    /// Steps the stopped thread one instruction at a time until it stops itself (`SIGSTOP`, then suppressed).
    pub fn step_to_stop(&mut self) -> io::Result<Stretch> {
        self.steps(u64::MAX)
    }

    /// Steps the stopped thread `n` instructions, or until it stops itself (`SIGSTOP`, then suppressed). Any
    /// other signal it receives is delivered with the next step (its handler, if any, is stepped too).
    pub fn steps(&mut self, n: u64) -> io::Result<Stretch> {
        let mut stretch = Stretch::default();
        let mut deliver = 0;
        while stretch.instructions < n {
            let rip = self.rip()?;
            if self.is_locked(rip)? {
                stretch.locked.push(rip);
            }
            *stretch.runs.entry(rip).or_default() += 1;
            // SAFETY: resumes our stopped tracee for one instruction, delivering `deliver` (0: none).
            check(unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, self.tid, 0, deliver) })?;
            stretch.instructions += 1;
            deliver = match self.wait_stop()? {
                libc::SIGTRAP => 0,
                libc::SIGSTOP => return Ok(stretch),
                other => other,
            };
        }
        Ok(stretch)
    }

    /// Writes `value` at `address` in the traced process (the same address as in the tracer: a fork's).
    pub fn write_u64(&self, address: usize, value: u64) -> io::Result<()> {
        let bytes = value.to_ne_bytes();
        let local = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let remote = libc::iovec {
            iov_base: address as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        // SAFETY: writes 8 bytes into our tracee, at an address of a static it shares with us by the fork.
        let n = unsafe { libc::process_vm_writev(self.tid, &local, 1, &remote, 1, 0) };
        if n != bytes.len() as isize {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The stopped thread's instruction pointer.
    fn rip(&self) -> io::Result<u64> {
        // SAFETY: user_regs_struct is plain integers, for which all zeroes is a value.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS fills `regs` for our stopped tracee.
        check(unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                self.tid,
                0,
                &mut regs as *mut libc::user_regs_struct,
            )
        })?;
        Ok(regs.rip)
    }

    fn is_locked(&mut self, rip: u64) -> io::Result<bool> {
        if let Some(&locked) = self.decoded.get(&rip) {
            return Ok(locked);
        }
        let locked = is_locked(&self.code(rip)?);
        self.decoded.insert(rip, locked);
        Ok(locked)
    }

    /// Up to 16 bytes of the traced thread's code at `rip` (fewer at a page end: the next page may be unmapped).
    fn code(&self, rip: u64) -> io::Result<Vec<u8>> {
        let mut bytes = [0u8; 16];
        let len = (4096 - (rip % 4096) as usize).min(16);
        let local = libc::iovec {
            iov_base: bytes.as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: rip as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: reads our tracee's memory into `bytes`, at most its length.
        let n = unsafe { libc::process_vm_readv(self.tid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(bytes[..n as usize].to_vec())
    }

    /// The instructions a stretch ran, by mapped file. Read it while the process lives.
    pub fn by_file(&self, stretch: &Stretch) -> std::collections::BTreeMap<String, u64> {
        let addresses: Vec<u64> = stretch.runs.keys().copied().collect();
        let mut files = std::collections::BTreeMap::new();
        for (&address, (file, _)) in addresses.iter().zip(self.places_each(&addresses)) {
            *files.entry(file).or_default() += stretch.runs.get(&address).copied().unwrap_or(0);
        }
        files
    }

    /// Where each distinct address lies, by address, as (the mapped file, the offset in that file): `readelf -l`
    /// gives the address `addr2line` wants for it. Read it while the process lives.
    pub fn places(&self, addresses: &[u64]) -> std::collections::BTreeMap<u64, (String, u64)> {
        let mut distinct = addresses.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let places = self.places_each(&distinct);
        distinct.into_iter().zip(places).collect()
    }

    /// [`Tracer::places`] of each address, in order.
    fn places_each(&self, addresses: &[u64]) -> Vec<(String, u64)> {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.tid)).unwrap_or_default();
        addresses
            .iter()
            .map(|&a| {
                maps.lines()
                    .find_map(|line| place(line, a))
                    .unwrap_or_else(|| ("[unmapped]".to_owned(), a))
            })
            .collect()
    }
}

/// (file, offset) of `address` if this line of /proc/PID/maps maps it.
fn place(line: &str, address: u64) -> Option<(String, u64)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    let offset = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
    let file = fields.nth(2).unwrap_or("[anonymous]");
    (start..end)
        .contains(&address)
        .then(|| (file.to_owned(), address - start + offset))
}

/// Whether the x86-64 instruction starting at `code[0]` is locked: a `lock` prefix among its legacy prefixes,
/// or an `xchg` with a memory operand (`86`/`87` with ModRM.mod != 3), which locks without one.
pub fn is_locked(code: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = code.get(i) {
        match b {
            0xf0 => return true,
            0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0x66 | 0x67 => i += 1,
            _ => break,
        }
    }
    if code.get(i).is_some_and(|b| (0x40..=0x4f).contains(b)) {
        i += 1;
    }
    matches!(code.get(i), Some(0x86 | 0x87)) && code.get(i + 1).is_some_and(|modrm| modrm >> 6 != 3)
}
