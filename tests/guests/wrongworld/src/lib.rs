//! A component whose `transform` has the wrong signature.

wit_bindgen::generate!({
    path: "wit",
    world: "transformer",
});

struct Wrong;

impl Guest for Wrong {
    fn transform(batch: Vec<String>) -> Vec<String> {
        batch
    }
}

export!(Wrong);
