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

{{- /* Namespaces where the operator reads NGC key Secrets. */ -}}
{{- define "nemotron-operator.secretNamespaces" -}}
{{- concat .Values.secretNamespaces .Values.watchNamespaces | uniq | toJson -}}
{{- end -}}
