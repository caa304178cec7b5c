//! Stages of a multi-stage Dockerfile: meta ARGs, stage names, `--target`
//! lookup, and which stages a target needs, in build order.

use crate::Error;
use crate::instruction::{ArgDef, Command, From, Instruction};
use crate::parser::{Ast, go_quote};
use crate::shell::{Lexer, Lookup};

/// A Dockerfile split into meta ARGs and stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARG instructions before the first FROM.
    pub meta_args: Vec<Instruction>,
    /// Stages in file order.
    pub stages: Vec<Stage>,
    /// The escape character of the file.
    pub escape: char,
    /// Parser warnings.
    pub warnings: Vec<String>,
}

/// One `FROM ...` and the instructions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position in the file, from 0 (what `COPY --from=0` names).
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM instruction (its command is always `Command::From`).
    pub from_instruction: Instruction,
    /// The FROM, unexpanded.
    pub from: From,
    /// The stage's instructions after FROM.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name, or the index as text for unnamed stages.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// What a FROM, `COPY --from` or `RUN --mount from=` refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Another stage of this Dockerfile (its index).
    Stage(usize),
    /// An image reference (or `scratch`).
    Image(String),
}

/// The values of the meta ARGs, after build-arg overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaArgs {
    /// `(name, value)` in declaration order; `None` for declared but unset.
    pub values: Vec<(String, Option<String>)>,
}

impl MetaArgs {
    /// The value of a meta ARG (the last declaration wins).
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
}

/// `^[a-z][a-z0-9-_.]*$`, BuildKit's rule for (lower-cased) stage names.
pub fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl Dockerfile {
    /// Parses Dockerfile text into stages.
    pub fn parse(src: &str) -> Result<Dockerfile, Error> {
        Dockerfile::from_ast(&crate::parser::parse(src)?)
    }

    /// Builds the typed instructions and groups them into stages.
    pub fn from_ast(ast: &Ast) -> Result<Dockerfile, Error> {
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in &ast.nodes {
            let ins = Instruction::from_node(node)?;
            let loc = ins.location;
            match &ins.command {
                Command::From(from) => {
                    if let Some(name) = &from.name
                        && stages.iter().any(|s| s.name.as_ref() == Some(name))
                    {
                        return Err(Error {
                            line: loc.start_line,
                            column: loc.column,
                            end_line: loc.end_line,
                            message: format!("duplicate stage name {}", go_quote(name)),
                        });
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: from.name.clone(),
                        from: from.clone(),
                        from_instruction: ins.clone(),
                        instructions: Vec::new(),
                    });
                }
                Command::Arg(_) if stages.is_empty() => meta_args.push(ins),
                _ => match stages.last_mut() {
                    Some(stage) => stage.instructions.push(ins),
                    None => {
                        return Err(Error {
                            line: loc.start_line,
                            column: loc.column,
                            end_line: loc.end_line,
                            message: format!(
                                "no build stage in current context ({} before the first FROM)",
                                node.instruction.to_ascii_uppercase()
                            ),
                        });
                    }
                },
            }
        }
        Ok(Dockerfile {
            meta_args,
            stages,
            escape: ast.escape,
            warnings: ast.warnings.clone(),
        })
    }

    /// Finds a stage by name (case-insensitive) or by index.
    pub fn stage(&self, name_or_index: &str) -> Option<&Stage> {
        let lower = name_or_index.to_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                name_or_index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.stages.get(i))
            })
    }

    /// The stage to build for `--target` (the last stage when `None`).
    pub fn target(&self, target: Option<&str>) -> Result<&Stage, Error> {
        match target {
            None => self
                .stages
                .last()
                .ok_or_else(|| Error::msg("the Dockerfile has no stages")),
            Some(t) => self.stage(t).ok_or_else(|| {
                let names: Vec<String> = self.stages.iter().map(Stage::display_name).collect();
                Error::msg(format!(
                    "target stage {} could not be found (stages: {})",
                    go_quote(t),
                    names.join(", ")
                ))
            }),
        }
    }

    /// The meta ARG values: a build arg overrides a default; defaults may
    /// refer to earlier meta ARGs.
    pub fn meta_args(&self, build_args: Lookup<'_>) -> Result<MetaArgs, Error> {
        let mut meta = MetaArgs::default();
        let lex = Lexer::new(self.escape);
        for ins in &self.meta_args {
            let Command::Arg(defs) = &ins.command else {
                continue;
            };
            for ArgDef { name, default } in defs {
                let value = match build_args(name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => Some(lex.process_word(d, &|n| meta.get(n)).map_err(|e| {
                            e.located(
                                ins.location.start_line,
                                ins.location.end_line,
                                ins.location.column,
                            )
                        })?),
                        None => None,
                    },
                };
                meta.values.push((name.clone(), value));
            }
        }
        Ok(meta)
    }

    /// What the FROM of `stage` refers to: an earlier stage by name, or an
    /// image (its name expanded with `meta`, usually [`MetaArgs::get`] plus
    /// the builder's automatic platform ARGs).
    pub fn base(&self, stage: usize, meta: Lookup<'_>) -> Result<Source, Error> {
        let st = self
            .stages
            .get(stage)
            .ok_or_else(|| Error::msg(format!("no stage {stage}")))?;
        let loc = st.from_instruction.location;
        let from = st
            .from
            .expand(meta, self.escape)
            .map_err(|e| e.located(loc.start_line, loc.end_line, loc.column))?;
        let lower = from.image.to_lowercase();
        Ok(self.stages[..stage]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map_or(Source::Image(from.image), |s| Source::Stage(s.index)))
    }

    /// What a `COPY --from` or `RUN --mount from=` value refers to: a stage
    /// name, a stage index, or else an image.
    pub fn resolve_from(&self, from: &str) -> Result<Source, Error> {
        let lower = from.to_lowercase();
        if let Some(s) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Ok(Source::Stage(s.index));
        }
        if let Ok(i) = from.parse::<i64>() {
            return usize::try_from(i)
                .ok()
                .filter(|&i| i < self.stages.len())
                .map(Source::Stage)
                .ok_or_else(|| Error::msg(format!("invalid stage index {i}")));
        }
        Ok(Source::Image(from.to_string()))
    }

    /// Everything `stage` pulls in directly: its base, `COPY --from` and
    /// `RUN --mount from=` sources, in order.
    pub fn direct_sources(&self, stage: usize, meta: Lookup<'_>) -> Result<Vec<Source>, Error> {
        let mut out = vec![self.base(stage, meta)?];
        for ins in &self.stages[stage].instructions {
            let l = ins.location;
            let locate = |e: Error| e.located(l.start_line, l.end_line, l.column);
            match &ins.command {
                Command::Copy(c) => {
                    if let Some(f) = &c.from {
                        out.push(self.resolve_from(f).map_err(locate)?);
                    }
                }
                Command::Run(r) => {
                    for m in &r.mounts {
                        if let Some(f) = &m.from {
                            out.push(self.resolve_from(f).map_err(locate)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The stages needed to build `target`, dependencies first and `target`
    /// last; stages nothing needs are left out.
    pub fn build_order(&self, target: usize, meta: Lookup<'_>) -> Result<Vec<usize>, Error> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            None,
            Active,
            Done,
        }
        fn visit(
            df: &Dockerfile,
            i: usize,
            meta: Lookup<'_>,
            marks: &mut [Mark],
            order: &mut Vec<usize>,
        ) -> Result<(), Error> {
            match marks[i] {
                Mark::Done => return Ok(()),
                Mark::Active => {
                    let st = &df.stages[i];
                    let l = st.from_instruction.location;
                    return Err(Error {
                        line: l.start_line,
                        column: l.column,
                        end_line: l.end_line,
                        message: format!(
                            "circular dependency detected on stage: {}",
                            st.display_name()
                        ),
                    });
                }
                Mark::None => {}
            }
            marks[i] = Mark::Active;
            for src in df.direct_sources(i, meta)? {
                if let Source::Stage(j) = src {
                    visit(df, j, meta, marks, order)?;
                }
            }
            marks[i] = Mark::Done;
            order.push(i);
            Ok(())
        }
        if target >= self.stages.len() {
            return Err(Error::msg(format!("no stage {target}")));
        }
        let mut marks = vec![Mark::None; self.stages.len()];
        let mut order = Vec::new();
        visit(self, target, meta, &mut marks, &mut order)?;
        Ok(order)
    }
}
