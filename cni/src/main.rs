//! `tortie-cni`: the CNI plugin binary. The runtime passes the command in `CNI_*` variables
//! and the network configuration on stdin; the result or error JSON goes to stdout.

use std::io::{Read, Write};

use tortie_cni::{config::Environment, run};

fn main() {
    let mut stdin = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut stdin) {
        eprintln!("tortie-cni: cannot read the network configuration from stdin: {error}");
    }
    let outcome = run(&Environment::from_process(), &stdin);
    if let Some(text) = outcome.stdout {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }
    std::process::exit(outcome.exit_code);
}
