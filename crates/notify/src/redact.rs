//! The redactor of every notification target: kbz-core's one [`Redactor`], which knows
//! each target's tokens and passwords (and their encoded forms) as well as every secret of
//! the run, so neither a delivery error nor a message body (a failed command's stderr) can
//! carry one.

pub(crate) use kbz_core::redact::Redactor;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_encoded_forms_longest_first() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("p@ss/word abc");
        r.add("");
        assert_eq!(
            r.redact("x p@ss/word abc y p%40ss%2Fword%20abc z abc"),
            "x **** y **** z ****"
        );
    }
}
