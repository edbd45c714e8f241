//! `product-telemetry user-id`: print the anonymous id.
//!
//! Enabled: the id is read, or created as any enabled run would. Disabled: an existing
//! id is shown and nothing is created.

use std::process::ExitCode;

use product_telemetry::UserId;
use product_telemetry::identity::{IdFileState, inspect};

use crate::options::GlobalOptions;

pub(crate) fn run(global: &GlobalOptions) -> ExitCode {
    let config = global.config();
    let consent = config.consent();
    if !consent.is_enabled() {
        return match config.user_id_path().as_deref().map(inspect) {
            Some(IdFileState::Valid(id)) => {
                println!("{}", id.hyphenated());
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("telemetry is {consent}: no id is created");
                ExitCode::FAILURE
            }
        };
    }
    let id = UserId::resolve(config.user_id_path().as_deref());
    println!("{}", id.as_str());
    ExitCode::SUCCESS
}
