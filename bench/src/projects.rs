//! The benchmark's fixture: one simulator holding a fresh copy of each project for every run, so
//! no run finds another's work (copies already made, entities already pointing elsewhere).

use std::collections::BTreeMap;

use anyhow::Context;
use synapse_sim::{Content, Fixture, NodeSpec, ProjectSpec, UserSpec, VersionSpec};

/// The generated project's files are small: this keeps the bench about Synapse calls, not bytes
/// (the generator's own mix averages over 1 MB a file, which moto would hold in memory per copy).
const MAX_SMALL_FILE: u64 = 64 * 1024;
const MIN_SMALL_FILE: u64 = 1024;
/// Owner of the generated project (the generator's `owner` shares an owner id with the sample's
/// `migrator`, so it joins under another).
const GENERATED_OWNER: &str = "owner";
const GENERATED_OWNER_ID: &str = "3350101";
const GENERATED_OWNER_TOKEN: &str = "bench-owner-token";

/// One project the runs are made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `fixtures/sample-project.json`.
    Sample,
    /// `Fixture::generate(files, seed)` with small files.
    Generated { files: usize, seed: u64 },
}

impl Kind {
    pub fn label(self) -> String {
        match self {
            Self::Sample => "sample".to_owned(),
            Self::Generated { files, .. } => format!("generated {files}"),
        }
    }
}

/// The merged fixture and, per (kind, run tag), the name of that run's copy and its file count.
pub struct Projects {
    pub fixture: Fixture,
    names: BTreeMap<(String, String), (String, usize)>,
}

impl Projects {
    /// A copy of each kind's project for each of `tags`.
    pub fn build(sample: Fixture, kinds: &[Kind], tags: &[&str]) -> anyhow::Result<Self> {
        let mut fixture = Fixture {
            projects: Vec::new(),
            ..sample.clone()
        };
        let mut names = BTreeMap::new();
        for &kind in kinds {
            let (template, handles) = match kind {
                Kind::Sample => (
                    sample
                        .projects
                        .first()
                        .context("the sample has no project")?
                        .clone(),
                    sample.file_handles.clone(),
                ),
                Kind::Generated { files, seed } => {
                    add_generated_owner(&mut fixture);
                    let generated = Fixture::generate(files, seed);
                    let mut project = generated.projects[0].clone();
                    project.owner = GENERATED_OWNER.to_owned();
                    shrink(&mut project.children);
                    (project, generated.file_handles)
                }
            };
            for tag in tags {
                let mut project = template.clone();
                project.name = format!("{} - {tag}", template.name);
                // Shared handles are per copy too: one copy's migration must not reuse another's.
                for (name, handle) in &handles {
                    fixture
                        .file_handles
                        .insert(format!("{tag}:{name}"), handle.clone());
                }
                rename_shared(&mut project.children, tag);
                names.insert(
                    (kind.label(), (*tag).to_owned()),
                    (project.name.clone(), count_files(&project)),
                );
                fixture.projects.push(project);
            }
        }
        Ok(Self { fixture, names })
    }

    /// The copy of `kind` for the run tagged `tag`, and its number of files.
    pub fn copy(&self, kind: Kind, tag: &str) -> anyhow::Result<(&str, usize)> {
        let (name, files) = self
            .names
            .get(&(kind.label(), tag.to_owned()))
            .with_context(|| format!("no copy of {} for {tag}", kind.label()))?;
        Ok((name, *files))
    }
}

fn add_generated_owner(fixture: &mut Fixture) {
    if !fixture.users.iter().any(|u| u.user_name == GENERATED_OWNER) {
        fixture.users.push(UserSpec {
            user_name: GENERATED_OWNER.to_owned(),
            owner_id: GENERATED_OWNER_ID.to_owned(),
            token: GENERATED_OWNER_TOKEN.to_owned(),
        });
    }
}

fn shrink(nodes: &mut [NodeSpec]) {
    shrink_files(nodes, MIN_SMALL_FILE, MAX_SMALL_FILE);
}

/// Makes every generated file's size fall in `min..max` (the generator's size, modulo the range),
/// keeping each file's seed.
pub fn shrink_files(nodes: &mut [NodeSpec], min: u64, max: u64) {
    for node in nodes {
        match node {
            NodeSpec::Folder { children, .. } => shrink_files(children, min, max),
            NodeSpec::File { versions, .. } => {
                for version in versions {
                    if let VersionSpec::Own(handle) = version {
                        if let Some(Content::Generated { size, .. }) = &mut handle.content {
                            *size = min + *size % (max - min).max(1);
                        }
                    }
                }
            }
            // A table's cells name handles of files; it has no content of its own.
            NodeSpec::Table { .. } => {}
        }
    }
}

fn rename_shared(nodes: &mut [NodeSpec], tag: &str) {
    for node in nodes {
        match node {
            NodeSpec::Folder { children, .. } => rename_shared(children, tag),
            NodeSpec::File { versions, .. } => {
                for version in versions {
                    if let VersionSpec::Shared { handle } = version {
                        *handle = format!("{tag}:{handle}");
                    }
                }
            }
            // The benchmark's projects have no tables (the tools compared migrate files only).
            NodeSpec::Table { .. } => {}
        }
    }
}

/// Files of a project, in every folder.
pub fn count_files(project: &ProjectSpec) -> usize {
    fn count(nodes: &[NodeSpec]) -> usize {
        nodes
            .iter()
            .map(|node| match node {
                NodeSpec::Folder { children, .. } => count(children),
                NodeSpec::File { .. } => 1,
                NodeSpec::Table { .. } => 0,
            })
            .sum()
    }
    count(&project.children)
}
