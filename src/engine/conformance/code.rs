//! Conformance cases of code mode (docs/api.md "Accounts that cannot make QR codes"): a
//! code's scene is held by one attempt of its app, on both engines, and not issued again
//! within an attempt lifetime of its end.

use std::collections::HashSet;

use super::{APP, CAPS, Kind, LONG, Rig};
use crate::engine::{EngineError, Event, NewAttempt, Phase};
use crate::ids::{PollKind, Scene};

fn code_scene(n: u32) -> Scene {
    Scene::of_code(&[n.to_be_bytes(), [0; 4], [0; 4], [0; 4]].concat())
}

fn new(app: &str, scene: &Scene) -> NewAttempt {
    NewAttempt { app: app.into(), ttl: LONG, kind: PollKind::Direct, requester: None, scene: Some(scene.clone()) }
}

conformance!(a_code_scene_is_held_by_one_attempt_until_a_lifetime_after_its_end, concurrent_creates_never_share_a_code);

async fn a_code_scene_is_held_by_one_attempt_until_a_lifetime_after_its_end(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    let s = code_scene(1);
    let c = r.e.create_with(new(APP, &s)).await.expect("a free scene");
    assert_eq!(c.scene, s);
    assert_eq!(r.e.create_with(new(APP, &s)).await.unwrap_err(), EngineError::SceneTaken);
    r.e.create_with(new("other", &s)).await.expect("a scene belongs to its app");
    // The text push finds the attempt by the scene, as a scan does.
    let o = r.e.apply_scene(APP, &s, Event::Scanned { openid: "o1".into(), user: None }).await.unwrap();
    assert_eq!(o.map(|o| o.phase), Some(Phase::NotReg));
    r.e.apply(&c.poll, Event::Discard).await.unwrap();
    assert_eq!(
        r.e.create_with(new(APP, &s)).await.unwrap_err(),
        EngineError::SceneTaken,
        "an ended code is not issued again within a lifetime"
    );
}

async fn concurrent_creates_never_share_a_code(kind: Kind) {
    let r = Rig::start(kind, CAPS).await;
    // A tiny code space (16 codes) and many more concurrent creates than codes.
    let tries = (0..200u32).map(|i| {
        let e = r.e.clone();
        actix::spawn(async move {
            let s = code_scene(i % 16);
            e.create_with(new(APP, &s)).await.map(|c| c.scene)
        })
    });
    let mut made = Vec::new();
    for t in tries.collect::<Vec<_>>() {
        match t.await.unwrap() {
            Ok(scene) => made.push(scene),
            Err(e) => assert_eq!(e, EngineError::SceneTaken),
        }
    }
    let distinct: HashSet<_> = made.iter().cloned().collect();
    assert_eq!(distinct.len(), made.len(), "two live attempts share a code");
    assert_eq!(made.len(), 16, "every code was issued once");
}
