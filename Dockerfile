# One image for every Airflow component of nudgeflow (docker-compose.yml): the product and its
# dependencies pinned by requirements.lock, plus the Postgres driver of the metadata DB. Not
# the [lab] or [dev] extras: a production image carries no simulator, plotting or test tools.
FROM python:3.11-slim

# the user the containers run as: uid 50000 and group 0, as in Airflow's image; compose may run
# another uid (AIRFLOW_UID) in group 0, hence the group-writable folders below
ARG AIRFLOW_UID=50000
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --create-home --home-dir /home/airflow --no-log-init airflow

# HOME, USER: an AIRFLOW_UID without a passwd entry still has a home and a name (Airflow asks)
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/airflow \
    USER=airflow \
    LOGNAME=airflow \
    AIRFLOW_HOME=/opt/airflow

WORKDIR /opt/nudgeflow
COPY pyproject.toml requirements.lock README.md ./
COPY plugins ./plugins
RUN pip install -c requirements.lock . psycopg2-binary \
    && rm -rf build plugins/*.egg-info
COPY dags ./dags
COPY dbt_project ./dbt_project

# the installed package finds the dbt project through NUDGEFLOW_DBT_PROJECT (nudgeflow/config.py);
# the code is imported from /opt/nudgeflow/plugins (compose mounts ./plugins there)
ENV NUDGEFLOW_DBT_PROJECT=/opt/nudgeflow/dbt_project \
    PYTHONPATH=/opt/nudgeflow/plugins \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/nudgeflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/nudgeflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    NUDGEFLOW_HOME=/opt/nudgeflow/data
RUN python -c "from nudgeflow.config import DBT_PROJECT_DIR as d; assert (d / 'dbt_project.yml').is_file(), d" \
    && mkdir -p /opt/airflow/logs /opt/airflow/config /opt/nudgeflow/data \
    && chown -R airflow:0 /opt/airflow /opt/nudgeflow/data /home/airflow \
    && chmod -R g+rwX /opt/airflow /opt/nudgeflow/data /home/airflow

USER airflow
CMD ["airflow", "version"]
