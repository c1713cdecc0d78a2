//! The approval link as a QR code for a terminal, so that a person can open it on their phone by
//! pointing the camera at the agent operator's screen.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// `url` as a QR code drawn with Unicode half blocks (two modules per character), dark on light,
/// with the quiet zone the standard asks for. `None` if the URL is too long for a QR code.
pub fn terminal_qr(url: &str) -> Option<String> {
    let code = QrCode::new(url.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_becomes_a_square_block_of_half_blocks() {
        let qr = terminal_qr("http://localhost:8080/approve/apr_AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let lines: Vec<&str> = qr.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|line| line.chars().count() == width));
        // Two modules per character vertically: about half as many lines as columns.
        assert!(
            (width / 2..=width / 2 + 1).contains(&lines.len()),
            "{width}x{}",
            lines.len()
        );
        assert!(
            qr.chars()
                .all(|c| " \u{2580}\u{2584}\u{2588}\n".contains(c))
        );
        // Different links give different codes.
        assert_ne!(
            qr,
            terminal_qr("http://localhost:8080/approve/apr_BBBBBBBBBBBBBBBBBBBBBB").unwrap()
        );
    }

    #[test]
    fn too_long_for_a_qr_code_is_none() {
        assert!(terminal_qr(&"x".repeat(5000)).is_none());
    }
}
