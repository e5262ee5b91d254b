//! The `dlm` command (being built).

fn main() {}
