//go:build e2e

package e2e

// The race lab's rows: the real-race probe and a group of configurations'
// client pods side by side.

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/dnsguard/dnsguard/test/cluster"
	"github.com/dnsguard/dnsguard/test/racelab/lab"
)

// Probe: the real race, no emulation. glibc and musl in one process each,
// the ClusterFirst configuration.
func (c *clusterLab) Probe(ctx context.Context, l *lab.Lab, n int) map[string][]lab.Lookup {
	got := map[string][]lab.Lookup{}
	var jobs []*podJob
	for _, libc := range []string{"glibc", "musl"} {
		jobs = append(jobs, &podJob{client: libc, image: clientImage(libc), n: n, ns: nsRacePlain, prefix: "rl-probe", args: lab.Client{Libc: libc}.GailoopArgs(n, raceZone, "-u", c.unique("probe", libc))})
	}
	c.runJobs(ctx, c.t, jobs, false)
	for _, j := range jobs {
		if j.err != nil {
			l.Fail("real-race probe %s: %v", j.client, j.err)
		}
		got[j.client] = j.lookups
		deletePod(j.ns, j.name)
	}
	return got
}

// modeRun is one configuration of a group being run: where its pods go and
// what is checked of them afterwards.
type modeRun struct {
	m         lab.Mode
	ns        string
	jobs      []*podJob
	nodeLocal bool
	control   bool
	// before: the node cache's counters before the rows (node-local).
	before lab.ResolverCounters
}

// RunModes measures a group of configurations side by side: a fresh table,
// one pod per client and configuration all at once (each pod with its own
// drop rule and counters, its own names to look up), one row each, and the
// resolvers' own counters around them.
func (c *clusterLab) RunModes(ctx context.Context, l *lab.Lab, group []lab.ModeRun) []lab.Row {
	t := c.t
	var runs []*modeRun
	var jobs []*podJob
	var labels []string
	for _, g := range group {
		r := c.prepareMode(ctx, l, g.Mode, g.Clients)
		if r == nil {
			continue
		}
		runs = append(runs, r)
		jobs = append(jobs, r.jobs...)
		labels = append(labels, g.Mode.Label)
	}
	if len(runs) == 0 {
		return nil
	}
	what := strings.Join(labels, " + ")
	nodeLocal := slices.ContainsFunc(runs, func(r *modeRun) bool { return r.nodeLocal })
	if nodeLocal && len(runs) > 1 {
		// The host rule and the node cache's counters are the node's, not
		// one configuration's.
		l.Fail("%s rows not run: a node-local configuration must run alone (give it no Group)", what)
		return nil
	}
	if err := l.Emulation.Reset(ctx); err != nil {
		l.Fail("%s rows not run: %v", what, err)
		return nil
	}
	if nodeLocal {
		// The node cache is hostNetwork: its own queries upstream (UDP to
		// the cluster DNS or the node's resolver) get the emulation too.
		if err := l.Emulation.AddHost(ctx, []string{clusterDNSIP, cluster.UpstreamIP}); err != nil {
			l.Fail("%s rows not run: %v", what, err)
			return nil
		}
		var err error
		if runs[0].before, err = scrapeCounters(ctx, "http://"+nodeCacheHealth+"/metrics"); err != nil {
			l.Fail("%s: node cache counters before the rows: %v", what, err)
		}
	}
	c.runJobs(ctx, t, jobs, true)
	// The rows went through kube-proxy's DNAT only if it is still there,
	// in the mode the page names, and no other mode's rules could have
	// DNATed them instead.
	ok, dnat := dnsDNAT(ctx, c.coreDNS)
	l.Check(ok, "%s rows ran behind kube-proxy's %s DNAT: %s", what, e2e.proxyMode, dnat)
	l.RuleListing(ctx)
	var rows []lab.Row
	for _, r := range runs {
		rows = append(rows, c.collectMode(ctx, l, r)...)
	}
	for _, j := range jobs {
		deletePod(j.ns, j.name)
	}
	if !c.spreadChecked {
		// While the first group's entries are fresh (UDP conntrack entries
		// live 30 s to 2 min).
		counts, err := lab.Spread(ctx, l.Node, clusterDNSIP, c.coreDNS)
		if err != nil {
			l.Fail("conntrack -L --orig-dst %s: %v", clusterDNSIP, err)
		} else {
			ok := len(c.coreDNS) == 2
			for _, ip := range c.coreDNS {
				ok = ok && counts[ip] > 0
			}
			l.Check(ok, "kube-proxy's DNAT spread the lookups' conntrack entries over both CoreDNS pods: %v", counts)
		}
		c.spreadChecked = true
	}
	return rows
}

// prepareMode makes one configuration's client pods (and, for the first
// node-local one, turns the node cache on); nil when its rows cannot run.
func (c *clusterLab) prepareMode(ctx context.Context, l *lab.Lab, m lab.Mode, clients []lab.Client) *modeRun {
	i := slices.IndexFunc(clusterModes, func(x clusterMode) bool { return x.Name == m.Name })
	ns, annotation := clusterModes[i].ns, clusterModes[i].annotation
	r := &modeRun{m: m, ns: ns, nodeLocal: strings.HasPrefix(m.Name, "nodelocal"), control: strings.HasSuffix(m.Name, "-control")}
	if m.Name == "nodelocal" {
		restore, err := c.enableNodeCache(ctx, c.t)
		c.restore = restore
		if err != nil {
			// The other rows still make a report.
			l.Fail("node-local rows not run: %v", err)
			return nil
		}
		c.nodeCacheOK = true
	}
	if r.nodeLocal && !c.nodeCacheOK {
		l.Fail("%s rows not run: no node cache", m.Label)
		return nil
	}
	for _, cl := range clients {
		n := l.Opts.N
		if r.control && cl.Libc == "musl" {
			n = min(n, controlMuslN)
		} else if r.control {
			n = min(n, controlN)
		}
		j := &podJob{client: cl.Name, image: clientImage(cl.Libc), n: n, ns: ns, annotation: annotation, prefix: "rl-" + m.Name}
		extra := []string{"-u", c.unique(m.Name, cl.Name)}
		if strings.HasPrefix(m.Name, "sidecar") {
			extra = append(extra, "-w", strconv.Itoa(lingerMS))
			j.scrape = true
		}
		j.args = cl.GailoopArgs(n, raceZone, extra...)
		switch m.Name {
		case "sidecar-control":
			j.block, j.prepare = blackhole, sidecarControl
		case "sidecar-nofallback":
			j.prepare = sidecarNoFallback
		case "nodelocal-control":
			j.block = nodeLocalIP
		}
		r.jobs = append(r.jobs, j)
	}
	return r
}

// collectMode makes one configuration's rows and checks its pods and
// resolvers.
func (c *clusterLab) collectMode(ctx context.Context, l *lab.Lab, r *modeRun) []lab.Row {
	m := r.m
	var rows []lab.Row
	lookups := 0
	for _, j := range r.jobs {
		if j.err != nil {
			l.Fail("row %s × %s: %v", m.Label, j.client, j.err)
		}
		row := lab.Row{Mode: m.Name, Label: m.Label, Client: j.client, Lookups: j.lookups, Collisions: j.collisions, Drops: j.drops, Blocked: j.blocked, Asked: j.n}
		c.t.Logf("row %s × %s: %d lookups, collisions %d, drops %d, blocked %d", m.Label, j.client, len(j.lookups), j.collisions, j.drops, j.blocked)
		l.WriteRow(row, j.log)
		rows = append(rows, row)
		lookups += len(j.lookups)
		if j.created != nil {
			c.checkPod(c.t, m.Name, j.created)
		}
		if j.scrape {
			c.checkSidecarCounters(m, j, r.control)
		}
	}
	if r.nodeLocal {
		c.checkNodeCache(ctx, m, r.before, lookups, r.control)
	}
	if len(r.jobs) > 0 && r.jobs[0].created != nil {
		c.captureResolv(m.Name, r.ns, r.jobs[0].name)
	}
	return rows
}
