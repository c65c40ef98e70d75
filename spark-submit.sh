#!/usr/bin/env bash
# Submit an mlv-spark job.
#
#   ./spark-submit.sh [--profile NAME] [--package venv|zip|env] [spark-submit options…] jobs/<job>.py [job arguments…]
#
# local profile (default): uses the project's venv and the jar cache from `make bootstrap`.
# cluster profiles (emr, databricks, …: `jars = "provided"`): zips mlv_spark for --py-files,
# ships conf/<profile>.toml with --files and passes the pinned Maven packages with --packages
# plus the catalog and scans jars. Credentials come from MLV_* environment variables, never arguments.
# --package zip (or MLV_PACKAGE=zip) runs a local profile as a cluster would: driver and Python
# workers get mlv_spark only from build/mlv_spark.zip (--py-files), through a Python that sees
# the venv's dependencies but not its installed mlv_spark (.run/zip-python).
# --package env (or MLV_PACKAGE=env) adds a packed environment of the Python dependencies for
# clusters that lack them: built (or reused) with venv-pack into build/, shipped with
# --archives …#environment, and run by the Python workers as ./environment/bin/python; a driver on
# this machine runs an unpacked copy (.run/packed-env). MLV_ENV_ARCHIVE names a prebuilt archive
# (a cluster profile also takes an s3:// URI); MLV_ENV_PYTHON_PREFIX is the nodes' Python prefix (EMR: /usr).
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
profile="${MLV_PROFILE:-local}"
package="${MLV_PACKAGE:-venv}"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: --profile needs a name, e.g. --profile local" >&2; exit 2; }
               profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --package) [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: --package needs venv, zip or env, e.g. --package zip" >&2; exit 2; }
               package="$2"; shift 2 ;;
    --package=*) package="${1#--package=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -gt 0 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
export MLV_PROFILE="$profile"
case "$package" in
  venv|zip|env) ;;
  *) echo "error: unknown package mode '$package' (--package or MLV_PACKAGE): use venv (the installed package), zip (only build/mlv_spark.zip, as on a cluster) or env (the zip and a packed environment of the dependencies)" >&2; exit 2 ;;
esac

if [ ! -f "$root/conf/$profile.toml" ]; then
  known="$(cd "$root/conf" && ls -- *.toml 2>/dev/null | sed 's/\.toml$//' | paste -sd, -)"
  echo "error: unknown profile '$profile': no conf/$profile.toml; known profiles: ${known//,/, } (--profile or MLV_PROFILE)" >&2
  exit 2
fi
# The Spark line (MLV_SPARK_LINE, else the profile's [spark] line) picks the venv: .venv for 4.0
# (and a profile that names none), .venv-spark35 for 3.5 (`make bootstrap SPARK=3.5`).
line="${MLV_SPARK_LINE:-$(sed -n 's/^line *= *"\([0-9.]*\)".*/\1/p' "$root/conf/$profile.toml" | head -1)}"
case "$line" in
  ""|4.0) venv="$root/.venv" ;;
  3.5) venv="$root/.venv-spark35" ;;
  *) echo "error: unknown Spark line '$line' (MLV_SPARK_LINE or [spark] line of conf/$profile.toml): use 4.0 or 3.5" >&2; exit 2 ;;
esac
py="$venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
jars_mode="$("$py" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["spark"].get("jars","local"))' "$root/conf/$profile.toml")"
submit="${SPARK_SUBMIT:-}"
if [ -z "$submit" ]; then
  if [ -x "$venv/bin/spark-submit" ]; then submit="$venv/bin/spark-submit"; else submit="spark-submit"; fi
fi

# --package env: the packed environment (a prebuilt MLV_ENV_ARCHIVE, else built or reused in build/).
env_archive=""
if [ "$package" = env ]; then
  if [ -n "${MLV_ENV_ARCHIVE:-}" ]; then env_archive="$MLV_ENV_ARCHIVE"
  else env_archive="$(cd "$root" && "$py" -m mlv_spark.packaging env --out build --line "${line:-4.0}" \
                        ${MLV_ENV_PYTHON_PREFIX:+--python-prefix "$MLV_ENV_PYTHON_PREFIX"})" || exit 2
  fi
fi

job="job"
for a in "${args[@]}"; do case "$a" in *.py) job="$(basename -- "$a" .py)"; break ;; esac; done
opts=(--name "mlv-spark:$job")
if [ "$jars_mode" = "local" ]; then
  classpath="$(cd "$root" && "$py" -m mlv_spark.jvm classpath)" || exit 2  # the module printed the error line
  run_py="$py"
  worker_py=""
  if [ "$package" != venv ]; then
    (cd "$root" && "$py" -m mlv_spark.packaging zip build/mlv_spark.zip >/dev/null) || exit 2
    run_py="$(cd "$root" && "$py" -m mlv_spark.packaging zip-python)" || exit 2
    opts+=(--py-files "$root/build/mlv_spark.zip" --files "$root/conf/$profile.toml,$root/pyproject.toml")
  fi
  if [ "$package" = env ]; then
    submit_master=""
    for ((i = 0; i < ${#args[@]}; i++)); do
      case "${args[i]}" in --master) submit_master="${args[i+1]:-}" ;; --master=*) submit_master="${args[i]#--master=}" ;; *.py) break ;; esac
    done
    pythons="$(cd "$root" && "$py" -m mlv_spark.packaging env-pythons "$env_archive" "$submit_master")" || exit 2
    run_py="$(sed -n 1p <<<"$pythons")"; worker_py="$(sed -n 2p <<<"$pythons")"
    # local[…]: the workers are the driver's children and use the unpacked copy; no archive to ship.
    [ "$worker_py" = "$run_py" ] || opts+=(--archives "$(sed -n 3p <<<"$pythons")#environment")
    # The packed environment has no Spark launcher (no PySpark jars): spark-submit takes this venv's.
    if [ -z "${SPARK_HOME:-}" ]; then
      for home in "$venv"/lib/python3*/site-packages/pyspark; do [ -d "$home/jars" ] && export SPARK_HOME="$home"; done
    fi
  fi
  export PYSPARK_PYTHON="${worker_py:-$run_py}" PYSPARK_DRIVER_PYTHON="$run_py"
  opts+=(--driver-class-path "$classpath" --conf "spark.executor.extraClassPath=$classpath"
         --driver-java-options "-Dlog4j2.configurationFile=file:$root/conf/log4j2.properties")
else
  (cd "$root" && "$py" -m mlv_spark.packaging zip build/mlv_spark.zip >/dev/null) || exit 2
  packages="$(cd "$root" && "$py" -m mlv_spark.jvm packages)"
  jar_dir="$root/.cache/jars"; make_line=""
  [ "$line" = 3.5 ] && { jar_dir="$root/.cache/jars-spark35"; make_line=" SPARK=3.5"; }
  catalog_jar="$jar_dir/mlv-lakefs-iceberg-0.1.0.jar"
  scans_jar="$jar_dir/mlv-spark-scans-0.1.0.jar"
  [ -f "$catalog_jar" ] || { echo "error: $catalog_jar missing: run 'make catalog-jar$make_line'" >&2; exit 1; }
  [ -f "$scans_jar" ] || { echo "error: $scans_jar missing: run 'make scans-jar$make_line'" >&2; exit 1; }
  opts+=(--packages "$packages" --jars "$catalog_jar,$scans_jar" --py-files "$root/build/mlv_spark.zip"
         --files "$root/conf/$profile.toml,$root/pyproject.toml")
  if [ "$package" = env ]; then
    # Spark's documented recipe: the workers (and a driver in --deploy-mode cluster) run the
    # archive's Python; a client-mode driver keeps PYSPARK_DRIVER_PYTHON (default: this venv's).
    case "$env_archive" in
      *://*) env_uri="$env_archive" ;;  # already on the cluster's storage, e.g. s3://…
      *) [ -f "$env_archive" ] || { echo "error: no packed environment at $env_archive (MLV_ENV_ARCHIVE): build it with 'make pack-env'" >&2; exit 2; }
         env_uri="$("$py" -c 'import pathlib,sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$env_archive")" ;;
    esac
    opts+=(--archives "$env_uri#environment")
    export PYSPARK_PYTHON="./environment/bin/python"
    case " ${args[*]} " in *" --deploy-mode cluster "*|*" --deploy-mode=cluster "*|*"spark.submit.deployMode=cluster "*) unset PYSPARK_DRIVER_PYTHON ;;
      *) export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$py}" ;; esac
  fi
fi
cd "$root"
exec "$submit" "${opts[@]}" "${args[@]}"
