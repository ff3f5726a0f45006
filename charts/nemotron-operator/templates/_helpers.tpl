{{- define "nemotron-operator.name" -}}nemotron-operator{{- end -}}

{{- define "nemotron-operator.labels" -}}
app.kubernetes.io/name: nemotron-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nemotron-operator.selector" -}}
app.kubernetes.io/name: nemotron-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nemotron-operator.fullname" -}}
{{- if eq .Release.Name "nemotron-operator" -}}nemotron-operator{{- else -}}{{ printf "%s-nemotron-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- /* Namespaces where the operator may read NGC key Secrets, as a JSON list: secretNamespaces,
or by default the watched namespaces (none when it serves all). The operator reads a key only in
the namespace of its NemotronDeployment, so a namespace it does not serve is a mistake. */ -}}
{{- define "nemotron-operator.secretNamespaces" -}}
{{- $watched := .Values.watchNamespaces -}}
{{- $secret := .Values.secretNamespaces | default $watched -}}
{{- if $watched }}
{{- range $secret }}
{{- if not (has . $watched) }}
{{- fail (printf "secretNamespaces: %q is not in watchNamespaces; the operator reads an NGC key only in the namespace of its NemotronDeployment" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $secret | toJson -}}
{{- end -}}
