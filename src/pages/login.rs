//! The login page (`GET /login`): a passkey, nothing else.
//!
//! There are no passwords to phish: the passkey only signs for this gateway's origin. By default
//! the passkey names the account (a discoverable credential), so the person types nothing and
//! the gateway's answer reveals no user names; a user name can still be given for a security key
//! that keeps no accounts. `static/login.js` runs the ceremony and then opens the dashboard.

use askama::Template;
use askama_web::WebTemplate;

/// The login page.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Who this browser is logged in as already, if anyone: the page says so and links to the
    /// dashboard, and still lets the person log in as someone else.
    pub logged_in_as: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::dashboard::tests::assert_no_inline_code;

    #[test]
    fn the_login_form() {
        let html = LoginPage { logged_in_as: None }.render().unwrap();
        assert_no_inline_code(&html);
        for needle in [
            r#"<form id="login""#,
            r#"id="user""#,
            "Log in with passkey",
            r#"<p id="status""#,
            "/static/login.js?v=",
        ] {
            assert!(html.contains(needle), "{needle} missing in {html}");
        }
        assert!(!html.contains("already logged in"));
    }

    #[test]
    fn a_logged_in_browser_is_told_so() {
        let html = LoginPage {
            logged_in_as: Some("alice".into()),
        }
        .render()
        .unwrap();
        assert_no_inline_code(&html);
        assert!(html.contains("already logged in as <b>alice</b>"), "{html}");
    }
}
