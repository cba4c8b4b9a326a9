use std::process::ExitCode;

use clap::Parser;
use synmigrate_cli::{commands, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match commands::run(&cli.deployment, &cli.command, &mut stdout).await {
        Ok(verdict) => verdict.into(),
        Err(error) => {
            eprintln!("synmigrate: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
