import CssBaseline from '@mui/material/CssBaseline';
import GlobalStyles from '@mui/material/GlobalStyles';
import { StyledEngineProvider, ThemeProvider } from '@mui/material/styles';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import './index.css';
import { theme } from './theme';

// `?theme=dark` or `?theme=light` picks the scheme (and keeps it), so a link or an audit can ask for one.
const asked = new URLSearchParams(location.search).get('theme');
if (asked === 'dark' || asked === 'light') localStorage.setItem('symphony-console-mode', asked);

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <StyledEngineProvider enableCssLayer>
      <GlobalStyles styles="@layer theme, base, mui, components, utilities;" />
      <ThemeProvider theme={theme} defaultMode="light" modeStorageKey="symphony-console-mode">
        <CssBaseline />
        <App />
      </ThemeProvider>
    </StyledEngineProvider>
  </StrictMode>,
);
