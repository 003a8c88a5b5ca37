//! `moocctl launch`: sends a correctly signed LTI 1.1 test launch, as the LMS would, and reports
//! the answer: how an admin checks the whole path end to end. `--print` shows the signed request
//! instead of sending it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use mooc_lti::lti;

use crate::ctx::{Ctx, OK};

#[derive(Debug, Args)]
pub struct LaunchCmd {
    /// The consumer key to sign with (its secret is read from the database)
    #[arg(long)]
    consumer: String,
    /// The learner's LMS user_id
    #[arg(long)]
    user: String,
    /// The learner's full name (lis_person_name_full), as an LMS with privacy sharing sends it
    #[arg(long)]
    name: Option<String>,
    /// The learner's email (lis_person_contact_email_primary)
    #[arg(long)]
    email: Option<String>,
    /// The course (context_id) [default: none, so the pool without `courses` serves it]
    #[arg(long)]
    course: Option<String>,
    /// Where to send it [default: http://<server.listen>/lti/launch]; it is signed for
    /// {public_url}/lti/launch either way, as an LMS signs it
    #[arg(long)]
    url: Option<String>,
    /// Print the signed request instead of sending it
    #[arg(long)]
    print: bool,
    /// Show the notebook token in the reported redirect
    #[arg(long)]
    show_token: bool,
}

impl LaunchCmd {
    pub fn is_print_only(&self) -> bool {
        self.print
    }

    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let app = ctx.app().await?;
        let secret = app
            .store
            .consumer_secret(&self.consumer)
            .await?
            .with_context(|| {
                format!(
                    "no enabled consumer {:?} (moocctl consumer list)",
                    self.consumer
                )
            })?;
        let mut params: Vec<(String, String)> = vec![
            ("lti_message_type".into(), lti::MESSAGE_TYPE.into()),
            ("lti_version".into(), lti::LTI_VERSION.into()),
            ("resource_link_id".into(), "moocctl-test-launch".into()),
            ("user_id".into(), self.user.clone()),
            ("roles".into(), "Learner".into()),
        ];
        for (k, v) in [
            ("lis_person_name_full", &self.name),
            ("lis_person_contact_email_primary", &self.email),
            ("context_id", &self.course),
        ] {
            if let Some(v) = v {
                params.push((k.into(), v.clone()));
            }
        }
        let launch_url = app.config.server.public_url.launch_url();
        let nonce = mooc_lti::secret::random_hex(16);
        let body = lti::sign_launch(
            &launch_url,
            &self.consumer,
            secret.expose(),
            &params,
            mooc_lti::now(),
            &nonce,
        );
        let target = self
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}/lti/launch", app.config.server.listen));
        if self.print {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if ctx.global.json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({"url": target, "signed_for": launch_url.as_str(), "body": body}),
                )?;
                writeln!(out)?;
            } else {
                writeln!(out, "POST {target}")?;
                writeln!(out, "Content-Type: application/x-www-form-urlencoded")?;
                writeln!(out)?;
                writeln!(out, "{body}")?;
            }
            return Ok(OK);
        }
        let resp = app
            .http
            .post_form(&target, body, Duration::from_secs(120))
            .await
            .with_context(|| format!("sending the launch to {target}"))?;
        let location = resp.header("location").map(|l| {
            if self.show_token {
                l.to_owned()
            } else {
                match l.split_once("token=") {
                    Some((head, _)) => format!("{head}token=***"),
                    None => l.to_owned(),
                }
            }
        });
        if ctx.global.json {
            ctx.emit(
                &serde_json::json!({"status": resp.status.as_u16(), "location": location}),
                || crate::ctx::table(&[]),
            )?;
        } else {
            ctx.say(format!(
                "{} {}",
                resp.status.as_u16(),
                resp.status.canonical_reason().unwrap_or("")
            ))?;
            if let Some(l) = &location {
                ctx.say(format!("-> {l}"))?;
            }
        }
        if resp.status.as_u16() != 302 {
            let text = resp.text();
            let summary = text
                .split("<p>")
                .nth(1)
                .and_then(|p| p.split("</p>").next())
                .unwrap_or("")
                .to_owned();
            bail!("the launch was not redirected ({}): {summary}", resp.status);
        }
        Ok(OK)
    }
}
