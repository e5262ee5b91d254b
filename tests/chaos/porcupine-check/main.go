// Command porcupine-check checks a dlm chaos run's key/value history for
// linearizability with porcupine (github.com/anishathalye/porcupine), and
// writes porcupine's HTML visualization of it with the run's faults.
//
//	porcupine-check HISTORY.json OUT.html
//
// HISTORY.json: {"ops":[...], "annotations":[...]} as written by dlm-chaos
// (tests/src/chaos/history.rs). It prints one JSON line:
// {"result":"ok"|"illegal"|"unknown","ops":N,"keys":K,"bad_key":...,
// "counterexample":[...]} and exits 0 (ok), 1 (illegal), 2 (unknown: the
// search timed out) or 3 (bad input).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// op is one operation of the history as recorded.
type op struct {
	Client   int     `json:"client"`
	Key      string  `json:"key"`
	Op       string  `json:"op"`
	Value    *string `json:"value"`
	Expect   *uint64 `json:"expect"`
	Call     int64   `json:"call"`
	Ret      int64   `json:"ret"`
	Unknown  bool    `json:"unknown"`
	Status   string  `json:"status"`
	OutValue *string `json:"out_value"`
	OutRev   *uint64 `json:"out_rev"`
}

type annotation struct {
	Tag    string `json:"tag"`
	Start  int64  `json:"start"`
	End    int64  `json:"end"`
	Desc   string `json:"desc"`
	Detail string `json:"detail"`
	Color  string `json:"color"`
}

type history struct {
	Ops         []op         `json:"ops"`
	Annotations []annotation `json:"annotations"`
}

// input is what was asked; output what came back.
type input struct {
	Key    string
	Op     string
	Value  string
	Expect uint64
}

type output struct {
	Unknown bool
	Status  string
	Value   *string
	Rev     *uint64
}

// state is one key's value: present or not, and its revision.
type state struct {
	Exists bool
	Value  string
	Rev    uint64
}

func step(s0 interface{}, in0 interface{}, out0 interface{}) (bool, interface{}) {
	s := s0.(state)
	in := in0.(input)
	out := out0.(output)
	revIs := func(r uint64) bool { return out.Rev == nil || *out.Rev == r }
	switch in.Op {
	case "get":
		if out.Unknown {
			return true, s
		}
		if !s.Exists {
			return out.Status == "NotFound", s
		}
		return out.Status == "Done" && out.Value != nil && *out.Value == s.Value && revIs(s.Rev), s
	case "put":
		next := state{Exists: true, Value: in.Value, Rev: 1}
		if s.Exists {
			next.Rev = s.Rev + 1
		}
		if out.Unknown {
			return true, next
		}
		return out.Status == "Done" && revIs(next.Rev), next
	case "cas":
		current := uint64(0)
		if s.Exists {
			current = s.Rev
		}
		if current != in.Expect {
			if out.Unknown {
				return true, s
			}
			return out.Status == "Conflict" && revIs(current), s
		}
		next := state{Exists: true, Value: in.Value, Rev: current + 1}
		if out.Unknown {
			return true, next
		}
		return out.Status == "Done" && revIs(next.Rev), next
	case "erase":
		if out.Unknown {
			return true, state{}
		}
		if !s.Exists {
			return out.Status == "NotFound", s
		}
		return out.Status == "Done", state{}
	}
	return false, s
}

func describe(in0 interface{}, out0 interface{}) string {
	in := in0.(input)
	out := out0.(output)
	var o string
	if out.Unknown {
		o = "?"
	} else {
		o = out.Status
		if out.Value != nil {
			o += " " + *out.Value
		}
		if out.Rev != nil {
			o += fmt.Sprintf(" r%d", *out.Rev)
		}
	}
	switch in.Op {
	case "put":
		return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, o)
	case "cas":
		return fmt.Sprintf("cas(%s, r%d, %s) -> %s", in.Key, in.Expect, in.Value, o)
	default:
		return fmt.Sprintf("%s(%s) -> %s", in.Op, in.Key, o)
	}
}

var model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		m := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range h {
			k := o.Input.(input).Key
			if _, ok := m[k]; !ok {
				keys = append(keys, k)
			}
			m[k] = append(m[k], o)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, m[k])
		}
		return out
	},
	Init:              func() interface{} { return state{} },
	Step:              step,
	Equal:             func(a, b interface{}) bool { return a.(state) == b.(state) },
	DescribeOperation: describe,
	DescribeState: func(s0 interface{}) string {
		s := s0.(state)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%s r%d", s.Value, s.Rev)
	},
}

func toOps(h history) ([]porcupine.Operation, error) {
	var last int64
	for _, o := range h.Ops {
		if o.Ret > last {
			last = o.Ret
		}
	}
	var ops []porcupine.Operation
	for _, o := range h.Ops {
		in := input{Key: o.Key, Op: o.Op}
		switch o.Op {
		case "put", "cas":
			if o.Value == nil {
				return nil, fmt.Errorf("%s without a value", o.Op)
			}
			in.Value = *o.Value
			if o.Op == "cas" {
				if o.Expect == nil {
					return nil, fmt.Errorf("cas without expect")
				}
				in.Expect = *o.Expect
			}
		case "get", "erase":
		default:
			return nil, fmt.Errorf("unknown op %q", o.Op)
		}
		out := output{Unknown: o.Unknown, Status: o.Status, Value: o.OutValue, Rev: o.OutRev}
		ret := o.Ret
		if o.Unknown {
			if o.Op == "get" {
				continue // a read whose answer is unknown says nothing
			}
			// It may take effect at any time after its call, or never:
			// it stays open until after everything else.
			ret = last + 1
		}
		ops = append(ops, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Call, Output: out, Return: ret})
	}
	return ops, nil
}

type report struct {
	Result         string   `json:"result"`
	Ops            int      `json:"ops"`
	Keys           int      `json:"keys"`
	BadKey         string   `json:"bad_key,omitempty"`
	Counterexample []string `json:"counterexample,omitempty"`
	Error          string   `json:"error,omitempty"`
}

func emit(r report, code int) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	os.Exit(code)
}

func main() {
	if len(os.Args) != 3 {
		emit(report{Result: "error", Error: "usage: porcupine-check HISTORY.json OUT.html"}, 3)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		emit(report{Result: "error", Error: err.Error()}, 3)
	}
	var h history
	if err := json.Unmarshal(raw, &h); err != nil {
		emit(report{Result: "error", Error: err.Error()}, 3)
	}
	ops, err := toOps(h)
	if err != nil {
		emit(report{Result: "error", Error: err.Error()}, 3)
	}
	res, info := porcupine.CheckOperationsVerbose(model, ops, 180*time.Second)
	var notes []porcupine.Annotation
	for _, a := range h.Annotations {
		notes = append(notes, porcupine.Annotation{Tag: a.Tag, Start: a.Start, End: a.End,
			Description: a.Desc, Details: a.Detail, BackgroundColor: a.Color})
	}
	info.AddAnnotations(notes)
	if err := porcupine.VisualizePath(model, info, os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "visualization:", err)
	}
	parts := model.Partition(ops)
	r := report{Ops: len(ops), Keys: len(parts)}
	switch res {
	case porcupine.Ok:
		r.Result = "ok"
		emit(r, 0)
	case porcupine.Unknown:
		r.Result = "unknown"
		emit(r, 2)
	}
	r.Result = "illegal"
	// The smallest failing key, and its longest linearizable prefix plus
	// the operations none of whose orders could extend it.
	for _, part := range parts {
		pres, pinfo := porcupine.CheckOperationsVerbose(model, part, 180*time.Second)
		if pres != porcupine.Illegal {
			continue
		}
		r.BadKey = part[0].Input.(input).Key
		longest := []porcupine.Operation{}
		for _, lin := range pinfo.PartialLinearizationsOperations() {
			for _, l := range lin {
				if len(l) > len(longest) {
					longest = l
				}
			}
		}
		in := map[int64]bool{}
		for _, o := range longest {
			in[o.Call] = true
			r.Counterexample = append(r.Counterexample, "linearized: "+describe(o.Input, o.Output))
		}
		if n := len(r.Counterexample); n > 20 {
			r.Counterexample = append([]string{fmt.Sprintf("... %d earlier operations linearized", n-20)}, r.Counterexample[n-20:]...)
		}
		var rest []porcupine.Operation
		for _, o := range part {
			if !in[o.Call] {
				rest = append(rest, o)
			}
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].Call < rest[j].Call })
		for i, o := range rest {
			if i >= 5 {
				break
			}
			r.Counterexample = append(r.Counterexample, fmt.Sprintf("cannot follow: %s (client %d, %d..%d ns)",
				describe(o.Input, o.Output), o.ClientId, o.Call, o.Return))
		}
		break
	}
	emit(r, 1)
}
