//! What a learner's browser or an LMS may see from us: short HTML pages for errors and waits, and the
//! IMS tool configuration XML. Every dynamic value is escaped; no page carries a secret, a token, a
//! base string or a stack trace.

use std::fmt::Write as _;

/// Escapes text for HTML and XML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A short page: a title and one paragraph.
pub fn page(title: &str, message: &str) -> String {
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;\
         color:#222}}h1{{font-size:1.4em}}</style></head>\
         <body><h1>{t}</h1><p>{m}</p></body></html>\n",
        t = escape(title),
        m = escape(message)
    );
    out
}

/// A short page that reloads `url` every `secs` seconds (no script needed).
pub fn refreshing_page(title: &str, message: &str, url: &str, secs: u32) -> String {
    page(title, message).replacen(
        "<title>",
        &format!(
            "<meta http-equiv=\"refresh\" content=\"{secs};url={}\"><title>",
            escape(url)
        ),
        1,
    )
}

/// The IMS Common Cartridge basic LTI link describing this tool, for LMSs that import XML.
pub fn config_xml(title: &str, launch_url: &str) -> String {
    let secure = if launch_url.starts_with("https://") {
        format!(
            "\n  <blti:secure_launch_url>{}</blti:secure_launch_url>",
            escape(launch_url)
        )
    } else {
        String::new()
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cartridge_basiclti_link xmlns="http://www.imsglobal.org/xsd/imslticc_v1p0"
    xmlns:blti="http://www.imsglobal.org/xsd/imsbasiclti_v1p0"
    xmlns:lticm="http://www.imsglobal.org/xsd/imslticm_v1p0"
    xmlns:lticp="http://www.imsglobal.org/xsd/imslticp_v1p0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.imsglobal.org/xsd/imslticc_v1p0 http://www.imsglobal.org/xsd/lti/ltiv1p0/imslticc_v1p0.xsd
      http://www.imsglobal.org/xsd/imsbasiclti_v1p0 http://www.imsglobal.org/xsd/lti/ltiv1p0/imsbasiclti_v1p0.xsd
      http://www.imsglobal.org/xsd/imslticm_v1p0 http://www.imsglobal.org/xsd/lti/ltiv1p0/imslticm_v1p0.xsd
      http://www.imsglobal.org/xsd/imslticp_v1p0 http://www.imsglobal.org/xsd/lti/ltiv1p0/imslticp_v1p0.xsd">
  <blti:title>{title}</blti:title>
  <blti:description>A personal Jupyter notebook for each learner.</blti:description>
  <blti:launch_url>{launch}</blti:launch_url>{secure}
  <blti:extensions platform="canvas.instructure.com">
    <lticm:property name="privacy_level">public</lticm:property>
    <lticm:property name="domain">{domain}</lticm:property>
  </blti:extensions>
  <cartridge_bundle identifierref="BLTI001_Bundle"/>
  <cartridge_icon identifierref="BLTI001_Icon"/>
</cartridge_basiclti_link>
"#,
        title = escape(title),
        launch = escape(launch_url),
        domain = escape(
            url::Url::parse(launch_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default()
                .as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let p = page("<b>x</b>", "\"Bob\" & <script>alert(1)</script>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
        assert!(p.contains("&quot;Bob&quot; &amp;"));
    }

    #[test]
    fn config_xml_names_the_launch_url() {
        let x = config_xml("Notebooks", "https://lti.example.edu/lti/launch");
        assert!(
            x.contains("<blti:launch_url>https://lti.example.edu/lti/launch</blti:launch_url>")
        );
        assert!(x.contains("<blti:secure_launch_url>"));
        assert!(x.contains("<lticm:property name=\"domain\">lti.example.edu</lticm:property>"));
    }
}
