//go:build e2e

package e2e

// The race lab's rows: the real-race probe and one configuration's client
// pods side by side.

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
		jobs = append(jobs, &podJob{client: libc, image: clientImage(libc), n: n, args: lab.Client{Libc: libc}.GailoopArgs(n, raceZone, "-u", c.unique("probe", libc))})
	}
	c.runJobs(ctx, c.t, nsRacePlain, "", "rl-probe", jobs, false)
	for _, j := range jobs {
		if j.err != nil {
			l.Fail("real-race probe %s: %v", j.client, j.err)
		}
		got[j.client] = j.lookups
		deletePod(nsRacePlain, j.name)
	}
	return got
}

// RunMode measures one configuration: a fresh table, one pod per client
// side by side, one row each, and the resolvers' own counters around them.
func (c *clusterLab) RunMode(ctx context.Context, l *lab.Lab, m lab.Mode, clients []lab.Client) []lab.Row {
	t := c.t
	i := slices.IndexFunc(clusterModes, func(x clusterMode) bool { return x.Name == m.Name })
	ns, annotation := clusterModes[i].ns, clusterModes[i].annotation
	nodeLocal := strings.HasPrefix(m.Name, "nodelocal")
	if m.Name == "nodelocal" {
		restore, err := c.enableNodeCache(ctx, t)
		c.restore = restore
		if err != nil {
			// The other rows still make a report.
			l.Fail("node-local rows not run: %v", err)
			return nil
		}
		c.nodeCacheOK = true
	}
	if nodeLocal && !c.nodeCacheOK {
		l.Fail("%s rows not run: no node cache", m.Label)
		return nil
	}
	control := strings.HasSuffix(m.Name, "-control")
	var jobs []*podJob
	for _, cl := range clients {
		n := l.Opts.N
		if control && cl.Libc == "musl" {
			n = min(n, controlMuslN)
		} else if control {
			n = min(n, controlN)
		}
		j := &podJob{client: cl.Name, image: clientImage(cl.Libc), n: n}
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
		jobs = append(jobs, j)
	}
	if err := l.Emulation.Reset(ctx); err != nil {
		l.Fail("%s rows not run: %v", m.Label, err)
		return nil
	}
	var before lab.ResolverCounters
	if nodeLocal {
		// The node cache is hostNetwork: its own queries upstream (UDP to
		// the cluster DNS or the node's resolver) get the emulation too.
		if err := l.Emulation.AddHost(ctx, []string{clusterDNSIP, cluster.UpstreamIP}); err != nil {
			l.Fail("%s rows not run: %v", m.Label, err)
			return nil
		}
		var err error
		if before, err = scrapeCounters(ctx, "http://"+nodeCacheHealth+"/metrics"); err != nil {
			l.Fail("%s: node cache counters before the rows: %v", m.Label, err)
		}
	}
	c.runJobs(ctx, t, ns, annotation, "rl-"+m.Name, jobs, true)
	// The rows went through kube-proxy's DNAT only if it is still there,
	// in the mode the page names, and no other mode's rules could have
	// DNATed them instead.
	ok, what := dnsDNAT(ctx, c.coreDNS)
	l.Check(ok, "%s rows ran behind kube-proxy's %s DNAT: %s", m.Label, e2e.proxyMode, what)
	l.RuleListing(ctx)
	var rows []lab.Row
	lookups := 0
	for _, j := range jobs {
		if j.err != nil {
			l.Fail("row %s × %s: %v", m.Label, j.client, j.err)
		}
		r := lab.Row{Mode: m.Name, Label: m.Label, Client: j.client, Lookups: j.lookups, Collisions: j.collisions, Drops: j.drops, Blocked: j.blocked, Asked: j.n}
		t.Logf("row %s × %s: %d lookups, collisions %d, drops %d, blocked %d", m.Label, j.client, len(j.lookups), j.collisions, j.drops, j.blocked)
		l.WriteRow(r, j.log)
		rows = append(rows, r)
		lookups += len(j.lookups)
		if j.created != nil {
			c.checkPod(t, m.Name, j.created)
		}
		if j.scrape {
			c.checkSidecarCounters(m, j, control)
		}
	}
	if nodeLocal {
		c.checkNodeCache(ctx, m, before, lookups, control)
	}
	if len(jobs) > 0 && jobs[0].created != nil {
		c.captureResolv(m.Name, ns, jobs[0].name)
	}
	for _, j := range jobs {
		deletePod(ns, j.name)
	}
	if !c.spreadChecked {
		// While the first mode's entries are fresh (UDP conntrack entries
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
