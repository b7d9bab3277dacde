# The smsgate image: one image, every service (`smsgate api|agent|callback|sim`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir . && useradd --system --groups dialout smsgate
USER smsgate
ENTRYPOINT ["smsgate"]
CMD ["--help"]
