//! How a node's GPUs are shared, from the provider's sharing configs: one file (a ConfigMap in
//! the chart) holding named configs, of which the Node label `pictor.network/device-plugin.config`
//! picks one, and `defaultConfig` when the node has none — as NVIDIA's device plugin does with
//! `nvidia.com/device-plugin.config`. Plain data and pure selection; the label is read by the
//! caller.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The most replicas a GPU may be split into: more would only make each pod's slice of time
/// too thin to be worth scheduling, and bounds the device list the kubelet keeps.
pub const MAX_REPLICAS: u32 = 64;

/// The value of `pictor.network/gpu.sharing` (and of the allocation's annotation) for GPUs
/// shared by time-slicing.
pub const TIME_SLICING: &str = "time-slicing";

/// The sharing config file: named configs and the one used when the node names none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharingConfigs {
    /// The config of a node without the label; none means GPUs are served whole.
    #[serde(default)]
    pub default_config: Option<String>,
    #[serde(default)]
    pub configs: BTreeMap<String, SharingConfig>,
}

/// One named config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharingConfig {
    /// Each GPU advertised as this many replicas that containers share by time-slicing.
    #[serde(default)]
    pub time_slicing: Option<TimeSlicing>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeSlicing {
    pub replicas: u32,
}

impl SharingConfig {
    /// Each GPU served whole, once.
    pub fn whole() -> Self {
        Self::default()
    }

    /// Each GPU as `replicas` time-sliced replicas.
    pub fn time_sliced(replicas: u32) -> Self {
        SharingConfig { time_slicing: Some(TimeSlicing { replicas }) }
    }

    /// How many devices each (non-MIG) GPU is served as: 1 when it is not shared.
    pub fn replicas(&self) -> u32 {
        self.time_slicing.as_ref().map_or(1, |t| t.replicas.max(1))
    }

    /// Whether GPUs are shared at all (a config of one replica shares nothing).
    pub fn is_shared(&self) -> bool {
        self.replicas() > 1
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SharingError {
    #[error("sharing config file {path}: {reason}")]
    File { path: String, reason: String },
    /// The node (or `defaultConfig`) names a config the file does not have: a typo the
    /// provider must fix, not a reason to serve GPUs some other way than asked.
    #[error("the sharing config {name:?} is not among the configured ones ({known})")]
    UnknownConfig { name: String, known: String },
    #[error("sharing config {name:?}: {replicas} replicas; between 1 and {MAX_REPLICAS} are allowed")]
    Replicas { name: String, replicas: u32 },
}

impl SharingConfigs {
    /// Reads a YAML (or JSON) config file and checks every config in it.
    pub fn read(path: &Path) -> Result<Self, SharingError> {
        let fail = |reason: String| SharingError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(|e| match e {
            SharingError::File { reason, .. } => fail(reason),
            other => other,
        })
    }

    /// Parses a config file's text and checks every config in it.
    pub fn parse(text: &str) -> Result<Self, SharingError> {
        let configs: SharingConfigs = serde_yaml::from_str(text)
            .map_err(|e| SharingError::File { path: "(text)".into(), reason: e.to_string() })?;
        for (name, config) in &configs.configs {
            if let Some(t) = &config.time_slicing
                && !(1..=MAX_REPLICAS).contains(&t.replicas)
            {
                return Err(SharingError::Replicas { name: name.clone(), replicas: t.replicas });
            }
        }
        if let Some(default) = configs.default_name() {
            configs.named(default)?;
        }
        Ok(configs)
    }

    /// The default config's name; an empty one (a chart's unset value) is none.
    fn default_name(&self) -> Option<&str> {
        self.default_config.as_deref().map(str::trim).filter(|d| !d.is_empty())
    }

    fn named(&self, name: &str) -> Result<&SharingConfig, SharingError> {
        self.configs.get(name).ok_or_else(|| SharingError::UnknownConfig {
            name: name.to_string(),
            known: self.configs.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The config a node uses: the one its label names, else the default, else whole GPUs.
    /// Returns its name too, for the log.
    pub fn select(&self, node_label: Option<&str>) -> Result<(String, SharingConfig), SharingError> {
        match node_label.map(str::trim).filter(|l| !l.is_empty()).or(self.default_name()) {
            Some(name) => Ok((name.to_string(), self.named(name)?.clone())),
            None => Ok(("(none)".to_string(), SharingConfig::whole())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
defaultConfig: whole
configs:
  whole: {}
  four-way:
    timeSlicing:
      replicas: 4
";

    #[test]
    fn the_node_label_picks_a_config_and_the_default_covers_the_rest() {
        let configs = SharingConfigs::parse(FILE).unwrap();
        let (name, config) = configs.select(Some("four-way")).unwrap();
        assert_eq!((name.as_str(), config.replicas(), config.is_shared()), ("four-way", 4, true));
        let (name, config) = configs.select(None).unwrap();
        assert_eq!((name.as_str(), config.replicas(), config.is_shared()), ("whole", 1, false));
        assert_eq!(configs.select(Some("  ")).unwrap().0, "whole", "an empty label is no label");
        let err = configs.select(Some("eight-way")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the sharing config \"eight-way\" is not among the configured ones (four-way, whole)"
        );
    }

    #[test]
    fn no_file_and_no_default_mean_whole_gpus() {
        let configs = SharingConfigs::default();
        assert_eq!(configs.select(None).unwrap().1, SharingConfig::whole());
        assert!(configs.select(Some("four-way")).is_err(), "a label naming nothing is an error");
        let unset =
            SharingConfigs::parse("defaultConfig: \"\"\nconfigs: {four-way: {timeSlicing: {replicas: 4}}}")
                .unwrap();
        assert_eq!(unset.select(None).unwrap().1, SharingConfig::whole(), "an empty default is none");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let zero = "configs: {z: {timeSlicing: {replicas: 0}}}";
        assert_eq!(
            SharingConfigs::parse(zero).unwrap_err(),
            SharingError::Replicas { name: "z".into(), replicas: 0 }
        );
        assert!(SharingConfigs::parse("configs: {big: {timeSlicing: {replicas: 65}}}").is_err());
        assert!(matches!(
            SharingConfigs::parse("defaultConfig: missing\nconfigs: {}").unwrap_err(),
            SharingError::UnknownConfig { .. }
        ));
        let typo = SharingConfigs::parse("configs: {a: {timeSlice: {replicas: 2}}}").unwrap_err();
        assert!(typo.to_string().contains("timeSlice"), "{typo}");
    }

    #[test]
    fn a_file_on_disk_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sharing.yaml");
        std::fs::write(&path, FILE).unwrap();
        assert_eq!(SharingConfigs::read(&path).unwrap(), SharingConfigs::parse(FILE).unwrap());
        let missing = SharingConfigs::read(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
    }
}
