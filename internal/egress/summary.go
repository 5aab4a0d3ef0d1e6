package egress

import (
	"net"
	"strconv"
	"sync/atomic"
)

// What a gateway keeps is bounded, whatever the agent does: the first DefaultMaxRecords
// attempts are itemized (each in the log), every attempt is counted, and the counts are kept
// per destination for the first DefaultMaxDestinations destinations and summed beyond them.
// A flood of attempts costs the host counters, not memory and disk without end.
const (
	DefaultMaxRecords      = 10_000
	DefaultMaxDestinations = 500
)

// Destination is the attempts to one host and port.
type Destination struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Allowed  int    `json:"allowed"`
	Denied   int    `json:"denied"`
	Failed   int    `json:"failed"`
	BytesOut int64  `json:"bytesOut"`
	BytesIn  int64  `json:"bytesIn"`
}

// Summary counts every attempt a gateway saw.
type Summary struct {
	Attempts int `json:"attempts"`
	Allowed  int `json:"allowed"`
	Denied   int `json:"denied"`
	Failed   int `json:"failed"`
	// Itemized attempts have a record in the log: the first ones, up to the gateway's limit.
	Itemized int `json:"itemized"`
	// Destinations are in the order of their first attempt; Other sums the attempts to
	// destinations beyond the limit (its Host is empty).
	Destinations []Destination `json:"destinations"`
	Other        *Destination  `json:"other,omitempty"`
	// Connections are those made to the gateway; Unparsed are requests its HTTP parser
	// refused before any destination was named (malformed, oversized or too slow headers):
	// they reached nothing, and are counted rather than itemized.
	Connections int64 `json:"connections"`
	Unparsed    int64 `json:"unparsed"`
	// Injected counts the requests each injected secret was put into, per host.
	Injected []Injected `json:"injected,omitempty"`
}

func (d *Destination) count(verdict string) {
	switch verdict {
	case Allowed:
		d.Allowed++
	case Denied:
		d.Denied++
	default:
		d.Failed++
	}
}

// tally counts e (g.mu held) and returns where its bytes go: its destination's index, or -1
// for Other.
func (g *Gateway) tally(e *Event) int {
	s := &g.summary
	s.Attempts++
	switch e.Verdict {
	case Allowed:
		s.Allowed++
	case Denied:
		s.Denied++
	default:
		s.Failed++
	}
	key := net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
	i, ok := g.destIndex[key]
	if !ok && len(s.Destinations) < g.limit(g.MaxDestinations, DefaultMaxDestinations) {
		if g.destIndex == nil {
			g.destIndex = map[string]int{}
		}
		i, ok = len(s.Destinations), true
		g.destIndex[key] = i
		s.Destinations = append(s.Destinations, Destination{Host: e.Host, Port: e.Port})
	}
	if !ok {
		if s.Other == nil {
			s.Other = &Destination{}
		}
		s.Other.count(e.Verdict)
		return -1
	}
	s.Destinations[i].count(e.Verdict)
	return i
}

// addBytes adds a closed connection's bytes to its destination (g.mu held).
func (g *Gateway) addBytes(dest int, e *Event) {
	d := g.summary.Other
	if dest >= 0 {
		d = &g.summary.Destinations[dest]
	}
	if d != nil {
		d.BytesIn += atomic.LoadInt64(&e.BytesIn)
		d.BytesOut += atomic.LoadInt64(&e.BytesOut)
	}
}

// Summary returns the counts so far; connections still open count the bytes moved so far.
func (g *Gateway) Summary() Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.summary
	s.Destinations = append([]Destination(nil), s.Destinations...)
	if s.Other != nil {
		o := *s.Other
		s.Other = &o
	}
	for c := range g.live {
		d := s.Other
		if c.dest >= 0 {
			d = &s.Destinations[c.dest]
		}
		if d != nil {
			d.BytesIn += atomic.LoadInt64(&c.e.BytesIn)
			d.BytesOut += atomic.LoadInt64(&c.e.BytesOut)
		}
	}
	s.Itemized = len(g.events)
	s.Connections = atomic.LoadInt64(&g.connections)
	s.Unparsed = max(atomic.LoadInt64(&g.requests)-atomic.LoadInt64(&g.handled), 0)
	if g.inj != nil {
		s.Injected = g.inj.injected()
	}
	return s
}

func (g *Gateway) limit(set, def int) int {
	if set > 0 {
		return set
	}
	return def
}
