//! `GET /entity/{id}/permissions` (`EntityAuthorizationUtils.getUserPermissionsForEntity`) and the
//! certification rule of UPDATE, over raw HTTP and through the official client.

use reqwest::StatusCode;
use serde_json::{json, Value};
use synapse_sim::Fixture;

use crate::common::{assert_refused, start, Api};
use crate::python_client::{client_dir, client_script};

/// Users: alice (owner, 101), bob (READ on the project, 102), carol (nothing on the project,
/// 103), mia (READ, DOWNLOAD, UPDATE: a migrator, 105), uma (as mia, but not certified, 106),
/// dan (no access to the project, 107). Project `P`: folder `data` with `a.txt`; folder
/// `shared` with its own ACL (carol READ and DOWNLOAD; dan READ, UPDATE, DELETE and
/// CHANGE_PERMISSIONS) holding `b.txt`.
fn fixture() -> Fixture {
    Fixture::from_json(
        &json!({
            "users": [
                {"userName": "alice", "ownerId": "101", "token": "alice-token"},
                {"userName": "bob", "ownerId": "102", "token": "bob-token"},
                {"userName": "carol", "ownerId": "103", "token": "carol-token"},
                {"userName": "mia", "ownerId": "105", "token": "mia-token"},
                {"userName": "uma", "ownerId": "106", "token": "uma-token"},
                {"userName": "dan", "ownerId": "107", "token": "dan-token"}
            ],
            "uncertifiedUsers": ["uma"],
            "storageLocations": [
                {"storageLocationId": 1, "kind": "synapse", "bucket": "sim-synapse"}
            ],
            "projects": [{
                "name": "P", "owner": "alice",
                "acl": {"bob": ["READ"], "mia": ["READ", "DOWNLOAD", "UPDATE"],
                        "uma": ["READ", "DOWNLOAD", "UPDATE"]},
                "children": [
                    {"type": "folder", "name": "data", "children": [
                        {"type": "file", "name": "a.txt", "versions": [{"content": {"text": "a\n"}}]}
                    ]},
                    {"type": "folder", "name": "shared",
                     "acl": {"carol": ["READ", "DOWNLOAD"],
                             "dan": ["READ", "UPDATE", "DELETE", "CHANGE_PERMISSIONS"]},
                     "children": [
                        {"type": "file", "name": "b.txt", "versions": [{"content": {"text": "b\n"}}]}
                    ]}
                ]
            }]
        })
        .to_string(),
    )
    .expect("permissions fixture parses")
}

/// The server's answer with every permission false for a signed-in, certified caller
/// (`EntityAuthorizationManagerUnitTest.createAllFalseUserEntityPermissions`, with `canUpload`
/// and `isCertifiedUser` true), and `ownerPrincipalId` when given.
fn nothing(owner: Option<u64>) -> Value {
    let mut answer = json!({
        "canView": false, "canEdit": false, "canMove": false, "canAddChild": false,
        "canCertifiedUserEdit": false, "canCertifiedUserAddChild": false,
        "isCertifiedUser": true, "canChangePermissions": false, "canChangeSettings": false,
        "canDelete": false, "canDownload": false, "canUpload": true,
        "canEnableInheritance": false, "canPublicRead": false, "canModerate": false,
        "isCertificationRequired": true, "isEntityOpenData": false, "isDataContributor": false
    });
    if let Some(owner) = owner {
        answer["ownerPrincipalId"] = owner.into();
    }
    answer
}

/// [`nothing`] with `fields` set to true.
fn with(owner: Option<u64>, fields: &[&str]) -> Value {
    let mut answer = nothing(owner);
    for field in fields {
        assert!(answer.get(*field).is_some(), "{field} is a field");
        answer[*field] = true.into();
    }
    answer
}

async fn permissions(api: &Api, id: &str) -> Value {
    let (status, body) = api.get(&format!("/entity/{id}/permissions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Each caller's permissions as the server computes them from the benefactor's ACL: the owner's
/// full ACL (the creator's `ENTITY_ADMIN_ACCESS_PERMISSIONS`), a migrator's READ, DOWNLOAD and
/// UPDATE, READ only, no access at all (200, every permission false: the server refuses no
/// caller), a folder's own ACL, an unknown entity (200, every permission false and no
/// `ownerPrincipalId`) and an id that is no number (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_permissions_follow_the_server_for_each_caller() {
    let sim = start(&fixture()).await;
    let api = |token: &str| Api::new(&sim, Some(token));
    let project = sim.project_id("P").unwrap();
    let a = sim.entity_id("P/data/a.txt").unwrap();
    let b = sim.entity_id("P/shared/b.txt").unwrap();
    let owner = Some(101);
    let all = [
        "canView",
        "canEdit",
        "canMove",
        "canAddChild",
        "canCertifiedUserEdit",
        "canCertifiedUserAddChild",
        "canChangePermissions",
        "canChangeSettings",
        "canDelete",
        "canDownload",
        "canModerate",
        "isDataContributor",
    ];
    // The owner: everything; a project's ACL cannot be deleted (DENY_IF_PARENT_IS_ROOT_OR_NULL),
    // a file's can (the server does not ask whether the file has an ACL of its own).
    let alice = api("alice-token");
    assert_eq!(permissions(&alice, &project).await, with(owner, &all));
    let mut file = with(owner, &all);
    file["canEnableInheritance"] = true.into();
    assert_eq!(permissions(&alice, &a).await, file);
    // A migrator: view, edit and download, nothing of an administrator's.
    let migrator = with(
        owner,
        &["canView", "canEdit", "canCertifiedUserEdit", "canDownload"],
    );
    assert_eq!(permissions(&api("mia-token"), &a).await, migrator);
    assert_eq!(permissions(&api("mia-token"), &project).await, migrator);
    // READ only: canView, not canEdit.
    let bob = api("bob-token");
    assert_eq!(permissions(&bob, &a).await, with(owner, &["canView"]));
    assert_eq!(permissions(&bob, &b).await, nothing(owner));
    // No access: 200 with every permission false (the entity's owner still shows).
    let carol = api("carol-token");
    assert_eq!(permissions(&carol, &a).await, nothing(owner));
    assert_eq!(
        permissions(&carol, &b).await,
        with(owner, &["canView", "canDownload"])
    );
    // A folder's own ACL governs its files.
    assert_eq!(
        permissions(&api("dan-token"), &b).await,
        with(
            owner,
            &[
                "canView",
                "canEdit",
                "canMove",
                "canCertifiedUserEdit",
                "canChangePermissions",
                "canDelete",
                "canEnableInheritance",
                "isDataContributor",
            ]
        )
    );
    assert_eq!(
        permissions(&api("dan-token"), &project).await,
        nothing(owner)
    );
    // Ids as KeyFactory reads them: any case, with or without `syn`.
    let number = project.trim_start_matches("syn");
    assert_eq!(
        permissions(&alice, &format!("SYN{number}")).await,
        with(owner, &all)
    );
    assert_eq!(permissions(&alice, number).await, with(owner, &all));
    // An unknown entity: DENY_IF_DOES_NOT_EXIST denies each permission, nothing is thrown.
    assert_eq!(permissions(&alice, "syn999999").await, nothing(None));
    assert_eq!(permissions(&alice, "-5").await, nothing(None));
    // An id that is no number.
    for bad in ["abc", "syn12x"] {
        assert_refused(
            &alice.get(&format!("/entity/{bad}/permissions")).await,
            StatusCode::BAD_REQUEST,
            &format!("{bad} is not a valid Synapse ID."),
        );
    }
    // Only signed-in callers.
    let (status, _) = Api::new(&sim, None)
        .get(&format!("/entity/{project}/permissions"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let counts = sim.request_counts();
    assert!(
        counts
            .by_endpoint
            .contains_key("GET /entity/{id}/permissions"),
        "{:?}",
        counts.by_endpoint
    );
    sim.shutdown().await;
}

/// A user who has not passed the certification quiz, with UPDATE on the project: `canEdit` on the
/// project only (DENY_IF_NOT_PROJECT_AND_NOT_CERTIFIED), `canCertifiedUserEdit` everywhere, and
/// every UPDATE check of the endpoints refuses them on anything but the project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertified_users_may_update_the_project_only() {
    let sim = start(&fixture()).await;
    let uma = Api::new(&sim, Some("uma-token"));
    let project = sim.project_id("P").unwrap();
    let a = sim.entity_id("P/data/a.txt").unwrap();
    let folder = sim.entity_id("P/data").unwrap();
    let expected = |edit: bool| {
        let mut answer = with(
            Some(101),
            &["canView", "canCertifiedUserEdit", "canDownload"],
        );
        answer["isCertifiedUser"] = false.into();
        answer["canEdit"] = edit.into();
        answer
    };
    assert_eq!(permissions(&uma, &project).await, expected(true));
    assert_eq!(permissions(&uma, &folder).await, expected(false));
    assert_eq!(permissions(&uma, &a).await, expected(false));
    // The endpoints agree: annotations and the entity of the project, not of the file.
    for (id, allowed) in [(&project, true), (&a, false)] {
        let (status, annotations) = uma.get(&format!("/entity/{id}/annotations2")).await;
        assert_eq!(status, StatusCode::OK, "{annotations}");
        let answer = uma
            .put(&format!("/entity/{id}/annotations2"), annotations)
            .await;
        let (status, entity) = uma.get(&format!("/entity/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{entity}");
        let handle = entity["dataFileHandleId"].clone();
        let put = uma.put(&format!("/entity/{id}"), entity).await;
        let mut answers = vec![answer, put];
        if !allowed {
            // The version handle swap's UPDATE check (NodeManagerImpl.updateNodeFileHandle:
            // hasAccess(UPDATE)) refuses the same way, whatever the handles.
            let swap = json!({"oldFileHandleId": handle, "newFileHandleId": handle});
            answers.push(
                uma.put(&format!("/entity/{id}/version/1/filehandle"), swap)
                    .await,
            );
        }
        for answer in answers {
            if allowed {
                assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
            } else {
                assert_refused(
                    &answer,
                    StatusCode::FORBIDDEN,
                    "Only certified users may create or update content in Synapse.",
                );
            }
        }
    }
    // A certified user with the same ACL entry may update the file.
    let mia = Api::new(&sim, Some("mia-token"));
    let (_, annotations) = mia.get(&format!("/entity/{a}/annotations2")).await;
    let (status, body) = mia
        .put(&format!("/entity/{a}/annotations2"), annotations)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sim.shutdown().await;
}

/// The official client reads the same answers: `restGET`, the deprecated
/// `Synapse.get_permissions` and the models' `get_permissions` (both `GET /entity/{id}/permissions`,
/// parsed by `Permissions.from_dict`, which needs `ownerPrincipalId`: an unknown entity's answer
/// lacks it, so the helpers fail on it with a KeyError while `restGET` returns it); an id that is
/// no number is the client's HTTP error with the server's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_reads_entity_permissions() {
    let sim = start(&fixture()).await;
    let project = sim.project_id("P").unwrap();
    let a = sim.entity_id("P/data/a.txt").unwrap();
    let (dir, config) = client_dir(&sim, "permissions");
    let script = r#"
import sys, warnings, synapseclient
from synapseclient.core.exceptions import SynapseHTTPError
from synapseclient.models import File, Project
warnings.simplefilter("ignore")
config, token, project, file = sys.argv[1:5]
syn = synapseclient.Synapse(configPath=config, skip_checks=True, silent=True)
syn.login(authToken=token, silent=True)
for entity in (project, file):
    raw = syn.restGET("/entity/%s/permissions" % entity)
    print("rest", raw["canView"], raw["canEdit"], raw["canDownload"], raw["ownerPrincipalId"])
    helper = syn.get_permissions(entity)
    print("helper", helper.can_edit, helper.is_certified_user, ",".join(helper.access_types))
model = Project(id=project).get_permissions(synapse_client=syn)
print("project", model.can_edit, model.owner_principal_id)
model = File(id=file).get_permissions(synapse_client=syn)
print("file", model.can_edit, model.can_certified_user_edit)
raw = syn.restGET("/entity/syn999999/permissions")
print("unknown", raw["canView"], raw["canUpload"], "ownerPrincipalId" in raw)
try:
    syn.get_permissions("syn999999")
except KeyError as error:
    print("helper KeyError", error)
try:
    syn.restGET("/entity/abc/permissions")
except SynapseHTTPError as error:
    print("bad", error.response.status_code, error.response.json()["reason"])
"#;
    let run = |token: &'static str| {
        let (dir, config, project, a) = (dir.clone(), config.clone(), project.clone(), a.clone());
        async move { client_script(&dir, &config, script, token, &[project, a]).await }
    };
    let tail = "unknown False True False\nhelper KeyError 'ownerPrincipalId'\n\
                bad 400 abc is not a valid Synapse ID.\n";
    assert_eq!(
        run("mia-token").await,
        format!(
            "rest True True True 101\nhelper True True READ,UPDATE,DOWNLOAD\n\
             rest True True True 101\nhelper True True READ,UPDATE,DOWNLOAD\n\
             project True 101\nfile True True\n{tail}"
        )
    );
    assert_eq!(
        run("bob-token").await,
        format!(
            "rest True False False 101\nhelper False True READ\n\
             rest True False False 101\nhelper False True READ\n\
             project False 101\nfile False False\n{tail}"
        )
    );
    assert_eq!(
        run("uma-token").await,
        format!(
            "rest True True True 101\nhelper True False READ,UPDATE,DOWNLOAD\n\
             rest True False True 101\nhelper False False READ,DOWNLOAD\n\
             project True 101\nfile False True\n{tail}"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
