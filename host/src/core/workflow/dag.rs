//! A workflow's graph: its nodes in the order the specification names them, each
//! node's parents and children, and the checks TorchServe makes: no node is its own
//! successor, no cycle. Several start nodes are allowed (TorchServe wants one): each
//! gets the client's request.

use std::collections::HashMap;

/// The graph of a `dag:` section.
#[derive(Clone, Debug)]
pub struct Dag {
    /// Node names, in the order they first appear.
    pub nodes: Vec<String>,
    /// Each node's parents (indices), in the order their edges appear.
    pub parents: Vec<Vec<usize>>,
    /// Each node's children (indices).
    pub children: Vec<Vec<usize>>,
}

impl Dag {
    /// Builds and checks the graph of `edges` (node → successors).
    pub fn new(edges: &[(String, Vec<String>)]) -> Result<Dag, String> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut nodes = Vec::new();
        let mut pairs = Vec::new();
        for (from, to) in edges {
            let f = id(from, &mut index, &mut nodes);
            for t in to {
                if t.trim().is_empty() {
                    continue;
                }
                if t == from {
                    return Err(format!("node {from} lists itself as its successor"));
                }
                let t = id(t, &mut index, &mut nodes);
                pairs.push((f, t));
            }
        }
        let mut parents = vec![Vec::new(); nodes.len()];
        let mut children = vec![Vec::new(); nodes.len()];
        for (f, t) in pairs {
            if !children[f].contains(&t) {
                children[f].push(t);
                parents[t].push(f);
            }
        }
        let dag = Dag {
            nodes,
            parents,
            children,
        };
        dag.check_acyclic()?;
        Ok(dag)
    }

    /// Kahn's algorithm: what is left once every node without pending parents is
    /// taken is a cycle.
    fn check_acyclic(&self) -> Result<(), String> {
        let mut pending: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = self.starts();
        let mut seen = 0;
        while let Some(n) = ready.pop() {
            seen += 1;
            for &c in &self.children[n] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.push(c);
                }
            }
        }
        if seen == self.nodes.len() {
            return Ok(());
        }
        let stuck: Vec<&str> = (0..self.nodes.len())
            .filter(|&n| pending[n] > 0)
            .map(|n| self.nodes[n].as_str())
            .collect();
        Err(format!(
            "the DAG has a cycle: nodes {} wait on each other",
            stuck.join(", ")
        ))
    }

    /// The nodes without parents: they get the client's request.
    pub fn starts(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.parents[n].is_empty())
            .collect()
    }

    /// The nodes without children: their outputs are the answer.
    pub fn leaves(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.children[n].is_empty())
            .collect()
    }
}

/// The index of node `name`, added at the end when new.
fn id<'a>(name: &'a str, index: &mut HashMap<&'a str, usize>, nodes: &mut Vec<String>) -> usize {
    if let Some(&i) = index.get(name) {
        return i;
    }
    nodes.push(name.to_string());
    index.insert(name, nodes.len() - 1);
    nodes.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(f, t)| (f.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn parallel_branches_fan_in() {
        let dag = Dag::new(&edges(&[
            ("pre", &["m1", "m2"]),
            ("m1", &["join"]),
            ("m2", &["join"]),
        ]))
        .unwrap();
        assert_eq!(dag.nodes, ["pre", "m1", "m2", "join"]);
        assert_eq!(dag.starts(), [0]);
        assert_eq!(dag.leaves(), [3]);
        assert_eq!(dag.parents[3], [1, 2]);
    }

    #[test]
    fn cycles_and_self_loops_are_refused() {
        let e = Dag::new(&edges(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])])).unwrap_err();
        assert!(e.contains("cycle") && e.contains("b, c"), "{e}");
        let e = Dag::new(&edges(&[("a", &["b"]), ("b", &["a"])])).unwrap_err();
        assert!(e.contains("cycle"), "{e}");
        let e = Dag::new(&edges(&[("a", &["a"])])).unwrap_err();
        assert!(e.contains("itself"), "{e}");
    }
}
