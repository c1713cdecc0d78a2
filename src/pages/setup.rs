//! The setup page (`GET /setup?code=CODE`): where a person redeems a setup or invitation code by
//! registering a passkey.
//!
//! The page looks the code up before showing a form, so a person holding a used or expired link
//! reads why it does not work instead of going through a passkey prompt that would fail. The
//! setup code lets the person choose their user name; an invitation names the user, and the page
//! shows that name read-only (the gateway refuses any other name for it anyway). The page only
//! prepares the form: `static/setup.js` runs the registration ceremony, and the gateway checks
//! the code again, atomically, when it is redeemed.

use askama::Template;
use askama_web::WebTemplate;

use crate::domain::InvitationRecord;

/// The setup page for one code, as looked up at one moment.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub link: SetupLink,
}

/// What the code in the link turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupLink {
    /// The gateway's setup code: the person picks a user name.
    Setup { code: String },
    /// An invitation for a named user.
    Invitation { code: String, user: String },
    /// No code, or one that is unknown, used or expired: an explanation and no form.
    Unusable,
}

impl SetupPage {
    /// The page for `code` and what the store holds for it (`None`: unknown, used or expired).
    pub fn new(code: Option<&str>, invitation: Option<&InvitationRecord>) -> SetupPage {
        let link = match (code, invitation) {
            (Some(code), Some(invitation)) => match &invitation.user {
                Some(user) => SetupLink::Invitation {
                    code: code.to_owned(),
                    user: user.to_string(),
                },
                None => SetupLink::Setup {
                    code: code.to_owned(),
                },
            },
            _ => SetupLink::Unusable,
        };
        SetupPage { link }
    }

    /// Whether the page shows a form (and so should be answered with 200 rather than 404).
    pub fn usable(&self) -> bool {
        self.link != SetupLink::Unusable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;
    use crate::pages::dashboard::tests::assert_no_inline_code;

    fn invitation(user: Option<&str>) -> InvitationRecord {
        InvitationRecord {
            code_sha256: "x".into(),
            user: user.map(|u| UserId::parse(u).unwrap()),
            expires_at: 0,
        }
    }

    #[test]
    fn a_setup_code_lets_the_person_choose_a_name() {
        let html = SetupPage::new(Some("abc"), Some(&invitation(None)))
            .render()
            .unwrap();
        assert_no_inline_code(&html);
        for needle in [
            r#"<form id="setup""#,
            r#"data-code="abc""#,
            r#"id="user""#,
            r#"id="passkey-name""#,
            r#"value="phone""#,
            r#"<button id="register""#,
            r#"<p id="status""#,
            r#"<a id="dashboard-link" href="/""#,
            "/static/setup.js?v=",
        ] {
            assert!(html.contains(needle), "{needle} missing in {html}");
        }
        assert!(!html.contains("readonly"));
    }

    #[test]
    fn an_invitation_shows_its_name_read_only() {
        let html = SetupPage::new(Some("abc"), Some(&invitation(Some("bob"))))
            .render()
            .unwrap();
        assert_no_inline_code(&html);
        assert!(html.contains(r#"value="bob" readonly"#), "{html}");
    }

    #[test]
    fn an_unusable_code_gets_an_explanation_and_no_form() {
        for page in [
            SetupPage::new(Some("abc"), None),
            SetupPage::new(None, None),
        ] {
            assert!(!page.usable());
            let html = page.render().unwrap();
            assert_no_inline_code(&html);
            assert!(!html.contains("<form"));
            assert!(!html.contains("<script"));
            assert!(html.contains("unknown, already used or expired"), "{html}");
        }
    }

    #[test]
    fn the_code_is_escaped() {
        let html = SetupPage::new(Some("\"><script>x</script>"), Some(&invitation(None)))
            .render()
            .unwrap();
        assert!(!html.contains("<script>x"));
    }
}
