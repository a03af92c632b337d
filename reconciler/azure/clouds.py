"""The national clouds `--cloud` names: where ARM is and which Entra ID host issues its tokens.

Plain data (no SDK import), so the CLI can check `--cloud` without loading the Azure SDK.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cloud:
    arm_endpoint: str
    authority: str  # Entra ID host that issues tokens for this cloud

    @property
    def scope(self) -> str:
        return f"{self.arm_endpoint}/.default"


CLOUDS = {
    "AzureCloud": Cloud("https://management.azure.com", "login.microsoftonline.com"),
    "AzureUSGovernment": Cloud("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
    "AzureChinaCloud": Cloud("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
}
