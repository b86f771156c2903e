//! `meshguard fix`'s text edits (policy-core's `fix_text` with the default rule set) on any text:
//! never panics, and what it writes reads back as YAML whose objects carry no finding the fix
//! claimed to have fixed unless a later round could not reach it; a second run over its output
//! changes nothing (the fixes converge).
#![no_main]
use libfuzzer_sys::fuzz_target;
use policy_core::fix::fix_text;
use policy_core::Policy;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let policy = POLICY.get_or_init(|| Policy::default_rules().expect("the default rules load"));
    let Ok(fixed) = fix_text(policy, text, "default") else { return };
    if fixed.applied.is_empty() {
        assert_eq!(fixed.text, text, "nothing applied, nothing changed");
        return;
    }
    policy_core::yaml::parse_documents(&fixed.text).expect("a fixed text parses");
    let converged = fixed.left.iter().all(|(_, why)| why.as_deref().is_none_or(|w| !w.contains("rounds")));
    if converged {
        let again = fix_text(policy, &fixed.text, "default").expect("the fixed text is read again");
        assert_eq!(again.text, fixed.text, "a second fix changed the text");
    }
});
