{{- /* The job label every scrape of this release gets (both monitors set it), and the selector
the alerts use: one release's series, whichever monitor scrapes them. */ -}}
{{- define "nemotron-operator.metricsSelector" -}}
job="{{ include "nemotron-operator.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}

{{- define "nemotron-operator.metricsEndpoint" -}}
port: metrics
path: /metrics
interval: {{ .interval }}
relabelings:
  - {action: replace, targetLabel: job, replacement: {{ .job }}}
{{- end -}}
