//! The OpenAPI document, generated from the handlers' annotations. A checked-in copy lives at
//! `crates/server/openapi.json`; a test fails when the two drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Baton", description = "Baton's control plane: runner protocol and operator API."),
    modifiers(&BearerAuth),
    tags(
        (name = "runner", description = "The runner protocol: register, session, long-poll, fenced job calls"),
        (name = "operator", description = "Tokens, jobs, runners, events; takes the admin token"),
        (name = "meta", description = "Health"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
