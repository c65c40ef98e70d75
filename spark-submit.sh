#!/usr/bin/env bash
# Submit an mlv-spark job.
#
#   ./spark-submit.sh [--profile NAME] [spark-submit options…] jobs/<job>.py [job arguments…]
#
# local profile (default): uses the project's venv and the jar cache from `make bootstrap`.
# cluster profiles (emr, databricks, …: `jars = "provided"`): zips mlv_spark for --py-files,
# ships conf/<profile>.toml with --files and passes the pinned Maven packages with --packages
# plus the catalog and scans jars. Credentials come from MLV_* environment variables, never arguments.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
profile="${MLV_PROFILE:-local}"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: --profile needs a name, e.g. --profile local" >&2; exit 2; }
               profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -gt 0 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
export MLV_PROFILE="$profile"

if [ ! -f "$root/conf/$profile.toml" ]; then
  known="$(cd "$root/conf" && ls -- *.toml 2>/dev/null | sed 's/\.toml$//' | paste -sd, -)"
  echo "error: unknown profile '$profile': no conf/$profile.toml; known profiles: ${known//,/, } (--profile or MLV_PROFILE)" >&2
  exit 2
fi
py="$root/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
jars_mode="$("$py" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["spark"].get("jars","local"))' "$root/conf/$profile.toml")"
submit="${SPARK_SUBMIT:-}"
if [ -z "$submit" ]; then
  if [ -x "$root/.venv/bin/spark-submit" ]; then submit="$root/.venv/bin/spark-submit"; else submit="spark-submit"; fi
fi

job="job"
for a in "${args[@]}"; do case "$a" in *.py) job="$(basename -- "$a" .py)"; break ;; esac; done
opts=(--name "mlv-spark:$job")
if [ "$jars_mode" = "local" ]; then
  classpath="$(cd "$root" && "$py" -m mlv_spark.jvm classpath)" || exit 2  # the module printed the error line
  export PYSPARK_PYTHON="$py" PYSPARK_DRIVER_PYTHON="$py"
  opts+=(--driver-class-path "$classpath" --conf "spark.executor.extraClassPath=$classpath"
         --driver-java-options "-Dlog4j2.configurationFile=file:$root/conf/log4j2.properties")
else
  mkdir -p "$root/build"
  (cd "$root" && "$py" -c 'import pathlib, zipfile
with zipfile.ZipFile("build/mlv_spark.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("mlv_spark").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            z.write(p)')
  packages="$(cd "$root" && "$py" -m mlv_spark.jvm packages)"
  catalog_jar="$root/.cache/jars/mlv-lakefs-iceberg-0.1.0.jar"
  scans_jar="$root/.cache/jars/mlv-spark-scans-0.1.0.jar"
  [ -f "$catalog_jar" ] || { echo "error: $catalog_jar missing: run 'make catalog-jar'" >&2; exit 1; }
  [ -f "$scans_jar" ] || { echo "error: $scans_jar missing: run 'make scans-jar'" >&2; exit 1; }
  opts+=(--packages "$packages" --jars "$catalog_jar,$scans_jar" --py-files "$root/build/mlv_spark.zip"
         --files "$root/conf/$profile.toml,$root/pyproject.toml")
fi
cd "$root"
exec "$submit" "${opts[@]}" "${args[@]}"
