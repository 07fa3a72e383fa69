//! Running the programs on crafted packets with `BPF_PROG_TEST_RUN`: the kernel executes the
//! real, verified program against private (unpinned) maps, and reports the verdict, the
//! rewritten packet and the time per run. Used by tests and benchmarks.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf, EbpfLoader,
};
use bpf_maps::{
    map_names,
    policy::{CtKey, CtValue, FragmentKey, FragmentValue},
};

use super::maps::DataplaneMaps;

pub mod fixture;

/// The interface index a test run's packet appears on: with no device given, the kernel runs
/// the program as if the packet came in on the loopback device of the current namespace.
pub const TEST_RUN_IFINDEX: u32 = 1;

/// What one program run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The TC action the program returned.
    pub action: i32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Average time per run as measured by the kernel.
    pub per_run: Duration,
}

/// A loaded copy of the dataplane whose maps belong to it alone.
pub struct ProgramRunner {
    ebpf: Ebpf,
    /// The runner's private maps, programmed like the agent programs the pinned ones.
    pub maps: DataplaneMaps,
}

impl ProgramRunner {
    /// Loads `object` with fresh, unpinned maps and loads every program.
    pub fn load(object: &Path) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load_file(object)
            .with_context(|| format!("loading {}", object.display()))?;
        for (name, program) in ebpf.programs_mut() {
            let program: &mut SchedClassifier = program
                .try_into()
                .with_context(|| format!("program {name} is not a TC classifier"))?;
            program
                .load()
                .with_context(|| format!("loading program {name}"))?;
        }
        let maps = DataplaneMaps::take(&mut ebpf)?;
        Ok(Self { ebpf, maps })
    }

    /// Runs program `name` on `packet` `repeat` times.
    pub fn run(&mut self, name: &str, packet: &[u8], repeat: u32) -> Result<RunOutcome> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        // Room for programs that grow the packet (encapsulation).
        let mut out = vec![0u8; packet.len() + 256];
        let mut options = TestRunOptions::new();
        options.data_in = Some(packet);
        options.data_out = Some(&mut out);
        options.repeat = repeat.max(1);
        let result = program
            .test_run(options)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        out.truncate(result.data_size_out as usize);
        Ok(RunOutcome {
            action: result.return_value as i32,
            packet: out,
            per_run: result.duration,
        })
    }

    /// One of the runner's maps by name ([`bpf_maps::map_names`]), for the maps
    /// [`DataplaneMaps`] does not hold.
    pub fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.ebpf
            .map_mut(name)
            .with_context(|| format!("map {name} is missing from the eBPF object"))
    }

    /// The runner's connection tracking table (`TORTIE_CT`).
    pub fn conntrack(&mut self) -> Result<HashMap<&mut MapData, CtKey, CtValue>> {
        Ok(HashMap::try_from(self.map_mut(map_names::CONNTRACK)?)?)
    }

    /// The runner's table of fragmented datagrams in flight (`TORTIE_FRAGS`).
    pub fn fragments(&mut self) -> Result<HashMap<&mut MapData, FragmentKey, FragmentValue>> {
        Ok(HashMap::try_from(self.map_mut(map_names::FRAGMENTS)?)?)
    }

    /// Packets decided by policy rule `rule` (`TORTIE_RULEHITS`), summed over CPUs.
    pub fn rule_hits(&mut self, rule: u32) -> Result<u64> {
        let hits: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.map_mut(map_names::RULE_HITS)?)?;
        Ok(hits.get(&rule, 0)?.iter().sum())
    }
}
