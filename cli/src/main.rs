//! `flowlog`: the command-line tool. Subcommands live in the crates that own them; this file only dispatches.
fn main() {}
