//! Which Redis holds the truth, read from `storage.snapshots`: one server
//! (`redis://`, `rediss://`), a Redis Cluster given any of its nodes
//! (`redis+cluster://h1:p1,h2:p2,…`, `rediss+cluster://` for TLS), or a primary that
//! Redis Sentinel names (`redis+sentinel://s1:p1,s2:p2,…/master_name`).

/// The shape of the Redis deployment a node talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of several): the URL as given.
    Single(String),
    /// A Redis Cluster: one `redis://` (or `rediss://`) URL per seed node, each with the
    /// user and password the cluster URL named.
    Cluster(Vec<String>),
    /// Redis Sentinel: the sentinels (`redis://host:port`), the name of the primary they
    /// watch, and how to reach a primary they name (`redis://` or `rediss://`, with the
    /// user and password the URL named: `{base}{host:port}/0`).
    Sentinel { sentinels: Vec<String>, master: String, base: String },
}

/// How the topology is named in metrics and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    Single,
    Cluster,
    Sentinel,
}

impl TopologyKind {
    pub fn name(self) -> &'static str {
        match self {
            TopologyKind::Single => "single",
            TopologyKind::Cluster => "cluster",
            TopologyKind::Sentinel => "sentinel",
        }
    }
}

impl Topology {
    /// Reads `url`; `Err` says what is wrong with it (never repeating a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
        let (base, sentinel) = match scheme {
            "redis" | "rediss" => return Ok(Self::Single(url.to_string())),
            "redis+cluster" => ("redis", false),
            "rediss+cluster" => ("rediss", false),
            "redis+sentinel" => ("redis", true),
            "rediss+sentinel" => ("rediss", true),
            _ => return Err("the scheme must be redis, rediss, redis+cluster or redis+sentinel".into()),
        };
        // A cluster has one database: a path (or a query) names nothing here; a
        // sentinel URL's path is the primary's name.
        let (rest, path) = rest.split_once('/').unwrap_or((rest, ""));
        let rest = rest.split('?').next().unwrap_or_default();
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), rest),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',').map(str::trim) {
            let (h, port) = host.rsplit_once(':').ok_or("each node must be host:port")?;
            if h.is_empty() || port.parse::<u16>().is_err() {
                return Err("each node must be host:port".into());
            }
            nodes.push(format!("{base}://{auth}{host}"));
        }
        if nodes.len() > 64 {
            return Err("at most 64 seed nodes".into());
        }
        if !sentinel {
            return Ok(Self::Cluster(nodes));
        }
        let master = path.split(['/', '?']).next().unwrap_or_default();
        if master.is_empty()
            || master.len() > 64
            || !master.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err("a sentinel URL ends in /master_name (letters, digits, '-', '_', '.')".into());
        }
        // The sentinels are asked without the primary's credentials.
        let sentinels = nodes
            .iter()
            .map(|n| format!("redis://{}", n.rsplit_once('@').map_or(&n[base.len() + 3..], |(_, h)| h)))
            .collect();
        Ok(Self::Sentinel { sentinels, master: master.to_string(), base: format!("{base}://{auth}") })
    }

    pub fn kind(&self) -> TopologyKind {
        match self {
            Topology::Single(_) => TopologyKind::Single,
            Topology::Cluster(_) => TopologyKind::Cluster,
            Topology::Sentinel { .. } => TopologyKind::Sentinel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_every_seed_node_with_its_credentials() {
        assert_eq!(Topology::parse("redis://h:1/0").unwrap(), Topology::Single("redis://h:1/0".into()));
        assert_eq!(
            Topology::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            Topology::Cluster(vec!["redis://127.0.0.1:7000".into(), "redis://127.0.0.1:7001".into()])
        );
        assert_eq!(
            Topology::parse("rediss+cluster://app:pw@a:1,b:2/").unwrap(),
            Topology::Cluster(vec!["rediss://app:pw@a:1".into(), "rediss://app:pw@b:2".into()])
        );
        for bad in ["redis+cluster://", "redis+cluster://a", "redis+cluster://a:x", "http://a:1", "a:1"] {
            let e = Topology::parse(bad).unwrap_err();
            assert!(!e.contains("pw"), "{e}");
        }
        assert_eq!(Topology::parse("redis+cluster://a:1").unwrap().kind().name(), "cluster");
        assert_eq!(
            Topology::parse("redis+sentinel://app:pw@s1:26379,s2:26380/mymaster").unwrap(),
            Topology::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                master: "mymaster".into(),
                base: "redis://app:pw@".into(),
            }
        );
        for bad in ["redis+sentinel://s1:1", "redis+sentinel://s1:1/", "redis+sentinel://s1:1/a b"] {
            assert!(Topology::parse(bad).is_err(), "{bad}");
        }
    }
}
