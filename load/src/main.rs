//! `load`: run one scenario against a scanlogin server and print its report.

use clap::Parser;
use scanlogin_load::{Options, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = Options::parse();
    let json = opts.json.clone();
    match run(opts).await {
        Ok(report) => {
            print!("{}", report.to_text());
            match json.as_deref() {
                Some("-") => println!("{}", report.to_json()),
                Some(path) => {
                    if let Err(e) = std::fs::write(path, report.to_json()) {
                        eprintln!("load: cannot write {path}: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
                None => {}
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
