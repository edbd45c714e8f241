//! The common properties every event of the anonymous service carries: operating
//! system, architecture, a per-process session id, and whether it runs in CI (and
//! which). Computed once, on the worker, never on the caller's thread. Never a host
//! name, a user name or a path.

use serde_json::Value;

use crate::Environment;
use crate::event::Properties;

/// CI providers by the variable each sets, most specific first.
const CI_VENDORS: &[(&str, &str)] = &[
    ("GITHUB_ACTIONS", "github_actions"),
    ("GITLAB_CI", "gitlab"),
    ("CIRCLECI", "circleci"),
    ("BUILDKITE", "buildkite"),
    ("TRAVIS", "travis"),
    ("TF_BUILD", "azure_pipelines"),
    ("JENKINS_URL", "jenkins"),
    ("BITBUCKET_BUILD_NUMBER", "bitbucket"),
    ("TEAMCITY_VERSION", "teamcity"),
    ("CODEBUILD_BUILD_ID", "aws_codebuild"),
    ("DRONE", "drone"),
];

/// The common properties for this process.
pub(crate) fn properties(env: &Environment) -> Properties {
    let mut props = Properties::new();
    props.insert("$os".into(), Value::from(os_name()));
    props.insert("os_arch".into(), Value::from(std::env::consts::ARCH));
    props.insert(
        "session_id".into(),
        Value::from(uuid::Uuid::now_v7().hyphenated().to_string()),
    );
    let vendor = ci_vendor(env);
    props.insert("ci".into(), Value::from(vendor.is_some()));
    if let Some(vendor) = vendor {
        props.insert("ci_vendor".into(), Value::from(vendor));
    }
    props
}

/// PostHog's spelling of the operating system.
fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        "android" => "Android",
        "ios" => "iOS",
        other => other,
    }
}

/// The CI vendor, `"unknown"` for a CI that only sets `CI`, or `None` outside CI.
pub(crate) fn ci_vendor(env: &Environment) -> Option<&'static str> {
    let set = |name: &str| {
        env.var(name)
            .is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
    };
    CI_VENDORS
        .iter()
        .find(|(var, _)| set(var))
        .map(|(_, vendor)| *vendor)
        .or_else(|| set("CI").then_some("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_detected_by_vendor_then_by_the_generic_variable() {
        let env = |pairs: &[(&str, &str)]| Environment::from_pairs(pairs.iter().copied());
        assert_eq!(ci_vendor(&env(&[])), None);
        assert_eq!(
            ci_vendor(&env(&[("GITHUB_ACTIONS", "true"), ("CI", "true")])),
            Some("github_actions")
        );
        assert_eq!(ci_vendor(&env(&[("CI", "1")])), Some("unknown"));
        assert_eq!(ci_vendor(&env(&[("CI", "false")])), None);
        let props = properties(&env(&[("GITLAB_CI", "true")]));
        assert_eq!(props["ci"], true);
        assert_eq!(props["ci_vendor"], "gitlab");
        assert!(props["session_id"].as_str().is_some());
        let text = serde_json::to_string(&props).unwrap();
        assert!(!text.contains('/'), "no paths: {text}");
    }
}
