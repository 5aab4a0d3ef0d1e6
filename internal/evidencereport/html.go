package evidencereport

import (
	"html/template"
	"io"
	"strconv"
	"strings"
)

// WriteHTML writes the report as one self-contained page: inline CSS, no scripts, no
// external assets. Every value comes from bundles, which hold what agents chose (commands,
// hosts, branch names): html/template escapes each one.
func WriteHTML(w io.Writer, r *Report) error {
	return page.Execute(w, r)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"join": strings.Join,
	"exit": func(c *int) string {
		if c == nil {
			return "–"
		}
		return strconv.Itoa(*c)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Agent sessions: evidence report</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
.meta { color: #57606a; margin-bottom: 1rem; }
.box { border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; }
.bad { background: #ffebe9; border: 2px solid #cf222e; }
.good { background: #dafbe1; border: 1px solid #1a7f37; }
.bad h2, .good h2 { margin: 0 0 .4rem; font-size: 1.1rem; }
.bad li { margin: .2rem 0; }
.summary { display: flex; gap: 1.5rem; flex-wrap: wrap; margin: 1rem 0; }
.summary div { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem .9rem; }
.summary b { display: block; font-size: 1.3rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #d0d7de; padding: .35rem .5rem; }
th { background: #f6f8fa; position: sticky; top: 0; }
tr.failed td { background: #ffebe9; }
code { font: 12px ui-monospace, monospace; word-break: break-all; }
.tag { display: inline-block; padding: 0 .4rem; border-radius: 4px; font-size: 12px; }
.ok { background: #dafbe1; } .no { background: #cf222e; color: #fff; } .warn { background: #fff8c5; }
</style>
</head>
<body>
<h1>Agent sessions: evidence report</h1>
<div class="meta">{{.Dir}} · verified with <code>{{.Key}}</code> · generated {{.Generated}}</div>
{{if .Failures}}<section id="failures" class="box bad">
<h2>{{len .Failures}} verification failure{{if gt (len .Failures) 1}}s{{end}}</h2>
<ul>{{range .Failures}}
<li><b>{{.Check}}</b>{{if .Bundle}} · <code>{{.Bundle}}</code>{{end}}: {{.Detail}}</li>{{end}}
</ul>
</section>{{else}}<section id="failures" class="box good"><h2>No verification failures</h2>
Every bundle verified with this key{{if eq .Summary.Log "verified"}}, and the session log holds each of them under its signed checkpoint{{end}}.</section>{{end}}
<div class="summary">
<div><b>{{.Summary.Bundles}}</b>sessions</div>
<div><b>{{.Summary.Verified}}</b>verified</div>
<div><b>{{.Summary.Failed}}</b>failed verification</div>
<div><b>{{.Summary.Log}}</b>session log{{if .Summary.LogEntries}} ({{.Summary.LogEntries}} entries){{end}}</div>
<div><b>{{.Summary.Drifted}}</b>drifted</div>
<div><b>{{.Summary.Denials}}</b>network denials</div>
</div>
<h2>Timeline</h2>
<table id="timeline">
<thead><tr><th>Started (self-asserted)</th><th>Session</th><th>Outcome</th><th>Tool</th><th>Repository and branch</th><th>Image</th><th>Network</th><th>Secrets</th><th>Checks</th></tr></thead>
<tbody>{{range .Sessions}}
<tr{{if not .Verified}} class="failed"{{end}}>
<td>{{.Started}}</td>
<td><code>{{.Bundle}}</code>{{if .Workspace}}<br>workspace {{.Workspace}}{{end}}</td>
<td>{{.Outcome}} (exit {{exit .ExitCode}})</td>
<td>{{.Tool}}{{if .Command}}<br><code>{{join .Command " "}}</code>{{end}}</td>
<td>{{.Repo}}{{if .Branch}}<br>branch <code>{{.Branch}}</code>{{end}}</td>
<td><code>{{.Image}}</code></td>
<td>{{.Network}}{{if .Denied}} · <span class="tag warn">{{.Denied}} denied</span>{{end}}</td>
<td>{{if .Secrets}}{{join .Secrets ", "}}{{else}}none{{end}}</td>
<td>{{if .Verified}}<span class="tag ok">verified</span>{{else}}<span class="tag no">NOT VERIFIED</span>{{end}}{{if eq .Drift "differs"}} <span class="tag warn">drift</span>{{end}}</td>
</tr>{{end}}
</tbody>
</table>
</body>
</html>
`))
