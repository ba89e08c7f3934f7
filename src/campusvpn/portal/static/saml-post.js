// The SAML answer came from the identity provider's site, so the browser kept the portal's
// SameSite cookie back; posting it again from our own page sends the cookie with it.
document.getElementById("saml-post")?.submit();
