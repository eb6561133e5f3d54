//! QR codes of key URIs, rendered here: the secret never goes to a remote chart service.

use alloc::string::String;

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use crate::KeyUri;

/// The text is too long for any QR code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text is too long for a QR code")]
pub struct QrError;

/// Renders `text` as a square SVG QR code (error correction level M, quiet zone included, at least
/// 200 px wide).
///
/// # Errors
/// [`QrError`] when `text` does not fit in a QR code (about 2,300 bytes at level M).
pub fn qr_svg(text: &str) -> Result<Zeroizing<String>, QrError> {
    let code =
        QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError)?;
    Ok(Zeroizing::new(
        code.render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    ))
}

impl KeyUri {
    /// The URI as an SVG QR code, for a customer to scan. It contains the secret, hence [`Zeroizing`].
    ///
    /// # Errors
    /// [`QrError`] when the URI is too long for a QR code (an issuer or account of hundreds of bytes).
    pub fn to_qr_svg(&self) -> Result<Zeroizing<String>, QrError> {
        qr_svg(&self.to_uri_string())
    }
}
