# One image for every Airflow component: the pinned dependencies and the nudgeflow package.
FROM python:3.11-slim
WORKDIR /opt/nudgeflow
COPY pyproject.toml requirements.lock README.md ./
COPY plugins ./plugins
RUN pip install --no-cache-dir -c requirements.lock -e . "psycopg2-binary>=2.9"
COPY dags ./dags
COPY dbt_project ./dbt_project
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/nudgeflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/nudgeflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    NUDGEFLOW_HOME=/data
